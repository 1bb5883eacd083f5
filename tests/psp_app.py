"""Helpers for app-level payment tests: a store on Stripe or Razorpay (the fake), signed webhooks.

The store is a real `create_app` whose provider is the real `stripe` / `razorpay` library
pointed at `tests/fake_psp.py`; webhooks are signed here the way each provider documents it,
independently of `shop/security.py`, so the tests do not check the code against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import AcpClient, RecordingSink
from tests.fake_psp import RAZORPAY_KEY_SECRET, RAZORPAY_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET

AGENT_TOKEN = "secret-token"
CONFIG = {
    "stripe": {"paymentProvider": "stripe"},
    "razorpay": {"paymentProvider": "razorpay", "currency": "inr"},
}


def provider_app(make_app: Any, fake_psp: Any, provider: str, sink: Any = None, **env: str) -> Any:
    """Return a store whose paymentProvider is `provider`, talking to the fake PSP."""
    return make_app(
        config=CONFIG[provider],
        env={"SHOP_API_KEYS": f"agent:{AGENT_TOKEN}", **fake_psp.env(provider), **env},
        sink=sink if sink is not None else RecordingSink(),
    )


def agent(app: Any) -> AcpClient:
    """Return an ACP client holding the store's agent API key."""
    return AcpClient(app.test_client(), token=AGENT_TOKEN)


def total(session: dict[str, Any]) -> int:
    """Return the session's grand total from its totals[]."""
    return next(t["amount"] for t in session["totals"] if t["type"] == "total")


def stock_of(app: Any, item_id: str) -> int | None:
    """Return what is left of an item."""
    from shop.checkout import stock
    from shop.state import get_state

    with app.app_context():
        return stock.available_quantities(get_state().catalog)[item_id]


def row_of(app: Any, session_id: str) -> Any:
    """Return the session's database row (detached; read its columns)."""
    from shop.storage.models import CheckoutSession, db

    with app.app_context():
        row = db.session.get(CheckoutSession, session_id)
        db.session.expunge(row)
        return row


def wait_for(predicate: Callable[[], Any], seconds: float = 5.0) -> Any:
    """Poll until predicate() is truthy (the order hand-off runs on a thread); return it."""
    deadline = time.monotonic() + seconds
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def metric(client: Any, name: str, **labels: str) -> float:
    """Read one counter from GET /metrics (0 when it has not been counted yet)."""
    text = client.get("/metrics").get_data(as_text=True)
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" (\d+(?:\.\d+)?)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


# --- Stripe webhooks ---------------------------------------------------------------------


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    """Return the raw body of a Stripe event (ids as strings, nothing expanded)."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "2026-04-22",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()


def stripe_signature(body: bytes, secret: str = STRIPE_WEBHOOK_SECRET, t: int | None = None) -> str:
    """Return a Stripe-Signature header: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def post_stripe(client: Any, body: bytes, signature: str | None = None) -> Any:
    """POST a Stripe event to /webhooks/stripe, signed unless a signature is given."""
    return client.post(
        "/webhooks/stripe",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature or stripe_signature(body)},
    )


def intent(
    session_id: str | None,
    amount: int,
    intent_id: str = "pi_test",
    currency: str = "usd",
    **extra: Any,
) -> dict[str, Any]:
    """Return a PaymentIntent object as Stripe puts it in data.object."""
    metadata = {"checkout_session_id": session_id} if session_id else {}
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency,
        "metadata": metadata,
        "status": "succeeded",
        **extra,
    }


# --- Razorpay ------------------------------------------------------------------------------


def razorpay_checkout_signature(
    order_id: str, payment_id: str, secret: str = RAZORPAY_KEY_SECRET
) -> str:
    """Return what Razorpay Checkout hands back: hex HMAC-SHA256(key secret, order|payment)."""
    return hmac.new(
        secret.encode(), f"{order_id}|{payment_id}".encode(), hashlib.sha256
    ).hexdigest()


def razorpay_payment_data(
    order_id: str, payment_id: str, signature: str | None = None
) -> dict[str, Any]:
    """Return a complete body carrying Razorpay Checkout's three values as the credential."""
    credential = {
        "type": "razorpay",
        "token": payment_id,
        "razorpay_payment_id": payment_id,
        "razorpay_order_id": order_id,
        "razorpay_signature": signature or razorpay_checkout_signature(order_id, payment_id),
    }
    return {
        "payment_data": {
            "handler_id": "razorpay",
            "instrument": {"type": "razorpay", "credential": credential},
        }
    }


def razorpay_event(
    event_type: str,
    payment: dict[str, Any] | None = None,
    order: dict[str, Any] | None = None,
    dispute: dict[str, Any] | None = None,
) -> bytes:
    """Return the raw body of a Razorpay webhook (entities under payload.<name>.entity)."""
    payload = {
        name: {"entity": entity}
        for name, entity in (("payment", payment), ("order", order), ("dispute", dispute))
        if entity
    }
    return json.dumps(
        {
            "entity": "event",
            "account_id": "acc_test",
            "event": event_type,
            "contains": list(payload),
            "payload": payload,
            "created_at": int(time.time()),
        }
    ).encode()


def razorpay_signature(body: bytes, secret: str = RAZORPAY_WEBHOOK_SECRET) -> str:
    """Return X-Razorpay-Signature: hex HMAC-SHA256(webhook secret, raw body)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_razorpay(
    client: Any, body: bytes, signature: str | None = None, event_id: str | None = None
) -> Any:
    """POST a Razorpay event to /webhooks/razorpay, signed unless a signature is given."""
    headers = {"X-Razorpay-Signature": signature or razorpay_signature(body)}
    if event_id:
        headers["X-Razorpay-Event-Id"] = event_id
    return client.post(
        "/webhooks/razorpay", data=body, content_type="application/json", headers=headers
    )
