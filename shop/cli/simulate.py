"""Signed provider webhooks for staging: the local stand-in for `stripe trigger`.

Builds the event Stripe or Razorpay would send about one checkout session, signs it with the
webhook secret exactly as the provider does, and POSTs it to a running store, so a staging
store can be taken through paid, failed and disputed payments without a provider dashboard.
The bodies carry the fields the real providers send (ids as strings, nothing expanded), so
the store parses them through the same code path as production events.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests

from shop.money import to_provider_units
from shop.security import hmac_sha256_hex, sign_timestamped

EVENTS: dict[str, tuple[str, ...]] = {
    "stripe": (
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.dispute.created",
        "charge.refunded",
    ),
    "razorpay": (
        "payment.captured",
        "order.paid",
        "payment.failed",
        "payment.dispute.created",
        "refund.processed",
    ),
    "test": ("payment.succeeded", "payment.failed", "payment.disputed", "payment.refunded"),
}
SECRET_VARIABLES = {
    "stripe": "STRIPE_WEBHOOK_SECRET",
    "razorpay": "RAZORPAY_WEBHOOK_SECRET",
    "test": "TEST_WEBHOOK_SECRET",
}
TIMEOUT_SECONDS = 30
MAX_ANSWER_CHARS = 500


class SimulationError(Exception):
    """The event could not be built or delivered; the message is one sentence saying why."""


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What an event says about a checkout session: its id, the amount and the provider ids."""

    session_id: str
    amount: int
    currency: str
    payment_reference: str | None = None
    provider_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class SignedEvent:
    provider: str
    type: str
    id: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Delivery:
    status: int
    answer: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _sim_id(prefix: str) -> str:
    return f"{prefix}_sim_{secrets.token_hex(8)}"


def build_event(
    provider: str,
    event_type: str,
    facts: SessionFacts,
    secret: str,
    event_id: str | None = None,
    now: int | None = None,
) -> SignedEvent:
    """Return the provider's event about this session, signed as the provider signs it."""
    if event_type not in EVENTS.get(provider, ()):
        raise SimulationError(
            f"{provider} has no simulated event '{event_type}'; use one of "
            f"{', '.join(EVENTS.get(provider, ()))}."
        )
    if not secret:
        raise SimulationError(
            f"{SECRET_VARIABLES[provider]} is not set; export the webhook "
            "signing secret the store verifies with."
        )
    now = int(time.time()) if now is None else now
    event_id = event_id or _sim_id("evt")
    if provider == "stripe":
        body = _json(_stripe_event(event_type, facts, event_id, now))
        headers = {"Stripe-Signature": sign_timestamped(secret, body, now)}
    elif provider == "test":  # signed like Razorpay's: hex HMAC-SHA256 of the raw body
        body = _json(_test_event(event_type, facts, event_id))
        headers = {"X-Test-Signature": hmac_sha256_hex(secret, body)}
    else:  # Razorpay sends the event id in a header, not in the body
        body = _json(_razorpay_event(event_type, facts, now))
        headers = {
            "X-Razorpay-Signature": hmac_sha256_hex(secret, body),
            "X-Razorpay-Event-Id": event_id,
        }
    return SignedEvent(provider, event_type, event_id, body, headers)


def _json(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _test_event(event_type: str, facts: SessionFacts, event_id: str) -> dict[str, Any]:
    reference = facts.payment_reference
    if not reference or reference.startswith("unknown:"):
        reference = _sim_id("test_pay")
    return {
        "id": event_id,
        "type": event_type,
        "session_id": facts.session_id,
        "reference": reference,
        "amount": facts.amount,
    }


def _stripe_event(event_type: str, facts: SessionFacts, event_id: str, now: int) -> dict[str, Any]:
    amount = to_provider_units(facts.amount, facts.currency, "stripe")
    facts = SessionFacts(
        facts.session_id, amount, facts.currency, facts.payment_reference, facts.provider_order_id
    )
    reference = facts.payment_reference
    if not (reference or "").startswith("pi_"):
        reference = _sim_id("pi")
    charge_id = _sim_id("ch")
    intent: dict[str, Any] = {
        "id": reference,
        "object": "payment_intent",
        "amount": facts.amount,
        "amount_received": 0,
        "currency": facts.currency.lower(),
        "created": now,
        "livemode": False,
        "metadata": {"checkout_session_id": facts.session_id},
        "payment_method_types": ["card"],
        "latest_charge": None,
    }
    if event_type == "payment_intent.succeeded":
        obj = {
            **intent,
            "status": "succeeded",
            "amount_received": facts.amount,
            "latest_charge": charge_id,
        }
    elif event_type == "payment_intent.payment_failed":
        obj = {
            **intent,
            "status": "requires_payment_method",
            "last_payment_error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            },
        }
    elif event_type == "charge.refunded":  # data.object is the charge, refunded in full
        obj = {
            "id": charge_id,
            "object": "charge",
            "amount": facts.amount,
            "amount_captured": facts.amount,
            "amount_refunded": facts.amount,
            "currency": facts.currency.lower(),
            "payment_intent": reference,
            "metadata": {"checkout_session_id": facts.session_id},
            "paid": True,
            "refunded": True,
            "status": "succeeded",
            "created": now,
            "livemode": False,
        }
    else:
        # Stripe sends the dispute with payment_intent and charge as plain ids (not expanded).
        obj = {
            "id": _sim_id("dp"),
            "object": "dispute",
            "amount": facts.amount,
            "currency": facts.currency.lower(),
            "charge": charge_id,
            "payment_intent": reference,
            "reason": "fraudulent",
            "status": "needs_response",
            "created": now,
            "livemode": False,
            "metadata": {},
        }
    return {
        "id": event_id,
        "object": "event",
        "api_version": None,
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


def _razorpay_event(event_type: str, facts: SessionFacts, now: int) -> dict[str, Any]:
    if not facts.provider_order_id:
        raise SimulationError(
            f"session '{facts.session_id}' has no Razorpay order yet (it has never been "
            "ready_for_payment); complete its details first, then simulate."
        )
    reference = facts.payment_reference
    if not (reference or "").startswith("pay_"):
        reference = _sim_id("pay")
    currency = facts.currency.upper()
    amount = to_provider_units(facts.amount, facts.currency, "razorpay")
    facts = SessionFacts(
        facts.session_id, amount, facts.currency, reference, facts.provider_order_id
    )
    notes = {"checkout_session_id": facts.session_id}
    payment: dict[str, Any] = {
        "id": reference,
        "entity": "payment",
        "amount": facts.amount,
        "currency": currency,
        "status": "captured",
        "order_id": facts.provider_order_id,
        "method": "card",
        "captured": True,
        "notes": notes,
        "error_code": None,
        "error_description": None,
        "created_at": now,
    }
    payload: dict[str, Any] = {"payment": {"entity": payment}}
    if event_type == "payment.failed":
        payment.update(
            status="failed",
            captured=False,
            error_code="BAD_REQUEST_ERROR",
            error_description="Payment failed because the card was declined.",
            error_reason="card_declined",
        )
    elif event_type == "order.paid":
        payload["order"] = {
            "entity": {
                "id": facts.provider_order_id,
                "entity": "order",
                "amount": facts.amount,
                "amount_paid": facts.amount,
                "amount_due": 0,
                "currency": currency,
                "receipt": facts.session_id[:40],
                "status": "paid",
                "notes": notes,
                "attempts": 1,
                "created_at": now,
            }
        }
    elif event_type == "refund.processed":  # a full refund: the payment's amount_refunded
        payment.update(status="refunded", amount_refunded=facts.amount, refund_status="full")
        payload["refund"] = {
            "entity": {
                "id": _sim_id("rfnd"),
                "entity": "refund",
                "amount": facts.amount,
                "currency": currency,
                "payment_id": reference,
                "status": "processed",
                "speed_processed": "normal",
                "created_at": now,
            }
        }
    elif event_type == "payment.dispute.created":
        payload["dispute"] = {
            "entity": {
                "id": _sim_id("disp"),
                "entity": "dispute",
                "payment_id": reference,
                "amount": facts.amount,
                "currency": currency,
                "reason_code": "fraud",
                "phase": "chargeback",
                "status": "open",
                "created_at": now,
            }
        }
    return {
        "entity": "event",
        "account_id": "acc_simulated",
        "event": event_type,
        "contains": list(payload),
        "payload": payload,
        "created_at": now,
    }


def post_event(base_url: str, event: SignedEvent, timeout: float = TIMEOUT_SECONDS) -> Delivery:
    """POST the signed event to {base_url}/webhooks/{provider}; return the store's answer."""
    base = base_url.rstrip("/")
    url = f"{base}/webhooks/{event.provider}"
    headers = {
        **event.headers,
        "Content-Type": "application/json",
        "User-Agent": "shop-webhook-simulate",
    }
    try:
        response = requests.post(url, data=event.body, headers=headers, timeout=timeout)
    except requests.ConnectionError as exc:
        raise SimulationError(
            f"nothing is listening on {base} — start the store with `gunicorn app:app` "
            "(or pass --url with the store's address)."
        ) from exc
    except (
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise SimulationError(
            f"--url {base_url!r} is not a store address like http://127.0.0.1:8000."
        ) from exc
    except requests.Timeout as exc:
        raise SimulationError(f"{url} did not answer within {timeout:g} s.") from exc
    except requests.RequestException as exc:
        raise SimulationError(f"could not POST to {url}: {type(exc).__name__}.") from exc
    answer = " ".join(response.text.split())  # one line, even for a proxy's HTML error page
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[:MAX_ANSWER_CHARS] + "…"
    return Delivery(response.status_code, answer)
