"""shop.refunds: a full refund cancels a paid order once, to the merchant and the agent platform.

The app's sinks are built from config, aimed at the loopback receiver (tests/receiver.py), which
verifies signatures and holds every body to its schema.
"""

from __future__ import annotations

from typing import Any

import pytest

from shop.checkout import refunds
from tests.conftest import ADDRESS_CA, FROM_CONFIG, AcpClient, cart, join_deliveries
from tests.offline_events import post_offline_event

ACP_PATH = "/agentic_checkout/webhooks/order_events"


@pytest.fixture
def app(make_app, order_receiver):
    return make_app(
        config={"orderWebhookUrl": order_receiver.url},
        env={
            "ORDER_WEBHOOK_SECRET": order_receiver.secret,
            "ACP_WEBHOOK_URL": order_receiver.acp_url,
            "ACP_WEBHOOK_SECRET": order_receiver.acp_secret,
        },
        sink=FROM_CONFIG,
    )


def _paid(app, token: str = "tok_visa") -> dict[str, Any]:
    acp = AcpClient(app.test_client())
    created = acp.create(cart(("widget", 1), address=ADDRESS_CA)).get_json()
    body = acp.complete(created["id"], token).get_json()
    join_deliveries()
    return body


def _cancel(app, session_id: str, amount: int, reference: str = "pay_refunded") -> str:
    with app.app_context():
        outcome = refunds.cancel_refunded_order(
            app.extensions["shop"], session_id, reference, amount
        )
    join_deliveries()
    return outcome


def _events(app, session_id: str) -> dict[tuple[str, str], str]:
    from shop.storage.models import OrderDelivery, db

    with app.app_context():
        rows = db.session.execute(
            db.select(OrderDelivery).where(OrderDelivery.session_id == session_id)
        ).scalars()
        return {(r.destination, r.event): r.state for r in rows}


def _total(body: dict[str, Any]) -> int:
    return next(t["amount"] for t in body["totals"] if t["type"] == "total")


def test_full_refund_cancels_the_order_for_merchant_and_agent(app, order_receiver):
    body = _paid(app)
    order_id, session_id, paid = body["order"]["id"], body["id"], _total(body)
    assert _cancel(app, session_id, paid) == "canceled"
    assert _events(app, session_id) == {
        ("merchant", "order.created"): "delivered",
        ("agent", "order_create"): "delivered",
        ("merchant", "order.canceled"): "delivered",
        ("agent", "order_update:canceled"): "delivered",
    }

    [canceled] = [
        r
        for r in order_receiver.deliveries
        if r.path != ACP_PATH and r.json()["event"] == "order.canceled"
    ]
    assert canceled.verified
    assert canceled.headers["Idempotency-Key"] == f"{order_id}:order.canceled"
    assert canceled.json()["cancel"] == {
        "reason": "refunded",
        "payment_reference": "pay_refunded",
        "amount_refunded": paid,
    }
    assert canceled.json()["order"]["id"] == order_id

    [update] = [
        r
        for r in order_receiver.deliveries
        if r.path == ACP_PATH and r.json()["type"] == "order_update"
    ]
    data = update.json()["data"]
    assert update.verified and update.json()["type"] == "order_update"
    assert data["id"] == order_id and data["status"] == "canceled"
    assert [(a["type"], a["status"], a["amount"]) for a in data["adjustments"]] == [
        ("refund", "completed", paid)
    ]
    assert {t["type"]: t["amount"] for t in data["totals"]}["amount_refunded"] == paid
    assert {li["status"] for li in data["line_items"]} == {"removed"}
    assert data["fulfillments"][0]["status"] == "canceled"


def test_a_second_refund_event_cancels_nothing_more(app, order_receiver):
    body = _paid(app)
    assert _cancel(app, body["id"], _total(body)) == "canceled"
    sent = len(order_receiver.requests)
    assert _cancel(app, body["id"], _total(body)) == "already_canceled"
    assert len(order_receiver.requests) == sent


def test_partial_refund_leaves_the_order_standing(app, order_receiver):
    body = _paid(app)
    assert _cancel(app, body["id"], _total(body) - 1) == "partial_refund"
    assert set(_events(app, body["id"])) == {
        ("merchant", "order.created"),
        ("agent", "order_create"),
    }
    assert _cancel(app, body["id"], _total(body)) == "canceled"  # the rest refunded later


def test_a_refund_on_an_unpaid_session_cancels_nothing(app, order_receiver):
    created = AcpClient(app.test_client()).create(cart(("widget", 1))).get_json()
    assert _cancel(app, created["id"], 100) == "not_paid"
    assert _cancel(app, "cs_nope", 100) == "not_paid"
    assert _events(app, created["id"]) == {} and order_receiver.requests == []


def test_order_update_is_sent_once_per_status(app, order_receiver):

    body = _paid(app)
    dispute = {
        "id": "evt_d",
        "type": "payment.disputed",
        "session_id": body["id"],
        "reference": "pay_evt",
    }
    for _ in range(2):  # the same dispute twice: one manual_review
        post_offline_event(app.test_client(), dispute)
    join_deliveries()
    assert _cancel(app, body["id"], _total(body)) == "canceled"
    statuses = [r.json()["data"]["status"] for r in order_receiver.deliveries if r.path == ACP_PATH]
    assert statuses == ["confirmed", "manual_review", "canceled"]


# --- provider refund webhooks, through the real stripe / razorpay libraries and the fake PSP ---


def _provider_app(make_app, fake_psp, order_receiver, provider: str):
    from tests.psp_app import AGENT_TOKEN, CONFIG

    return make_app(
        config={**CONFIG[provider], "orderWebhookUrl": order_receiver.url},
        env={
            "SHOP_API_KEYS": f"agent:{AGENT_TOKEN}",
            **fake_psp.env(provider),
            "ORDER_WEBHOOK_SECRET": order_receiver.secret,
            "ACP_WEBHOOK_URL": order_receiver.acp_url,
            "ACP_WEBHOOK_SECRET": order_receiver.acp_secret,
        },
        sink=FROM_CONFIG,
    )


def _canceled(order_receiver) -> list[dict[str, Any]]:
    return [o for o in order_receiver.orders if o.get("event") == "order.canceled"]


def test_stripe_charge_refunded_in_full_cancels_the_order(make_app, fake_psp, order_receiver):
    from tests.psp_app import agent, post_stripe, row_of, stripe_event, total

    app = _provider_app(make_app, fake_psp, order_receiver, "stripe")
    acp = agent(app)
    session = acp.create(cart(("widget", 1), address=ADDRESS_CA)).get_json()
    assert acp.complete(session["id"], "tok_visa").get_json()["status"] == "completed"
    join_deliveries()
    intent_id = row_of(app, session["id"]).payment_reference
    paid = total(session)

    def charge(refunded: int) -> dict[str, Any]:  # as Stripe sends it: the charge, ids unexpanded
        return {
            "id": "ch_1",
            "object": "charge",
            "amount": paid,
            "amount_refunded": refunded,
            "currency": "usd",
            "payment_intent": intent_id,
            "metadata": {},
            "refunded": refunded == paid,
            "status": "succeeded",
        }

    client = app.test_client()
    partial = post_stripe(client, stripe_event("charge.refunded", charge(paid - 500), "evt_r1"))
    assert partial.get_json()["outcome"] == "partial_refund"
    full = post_stripe(client, stripe_event("charge.refunded", charge(paid), "evt_r2"))
    assert full.get_json()["outcome"] == "canceled"
    again = post_stripe(client, stripe_event("charge.refunded", charge(paid), "evt_r2"))
    assert again.get_json()["outcome"] == "duplicate"
    join_deliveries()
    [canceled] = _canceled(order_receiver)
    assert canceled["cancel"] == {
        "reason": "refunded",
        "payment_reference": intent_id,
        "amount_refunded": paid,
    }
    assert [
        r.json()["data"]["status"] for r in order_receiver.deliveries if r.path == ACP_PATH
    ] == ["confirmed", "canceled"]


def test_razorpay_refund_processed_in_full_cancels_the_order(make_app, fake_psp, order_receiver):
    import json
    import time

    from tests.psp_app import (
        agent,
        post_razorpay,
        razorpay_event,
        razorpay_signature,
        total,
    )

    app = _provider_app(make_app, fake_psp, order_receiver, "razorpay")
    acp = agent(app)
    session = acp.create(cart(("widget", 1), address=ADDRESS_CA, currency="inr")).get_json()
    order_id = session["capabilities"]["payment"]["handlers"][0]["config"]["order_id"]
    paid = total(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, paid, status="captured")
    payment = dict(fake_psp.razorpay_payments[payment_id])
    client = app.test_client()
    captured = post_razorpay(client, razorpay_event("payment.captured", payment), event_id="e1")
    assert captured.get_json()["outcome"] == "completed"
    join_deliveries()

    def refund(refunded: int, refund_id: str) -> bytes:  # refund.processed carries both entities
        return json.dumps(
            {
                "entity": "event",
                "account_id": "acc_test",
                "event": "refund.processed",
                "contains": ["refund", "payment"],
                "created_at": int(time.time()),
                "payload": {
                    "refund": {
                        "entity": {
                            "id": refund_id,
                            "entity": "refund",
                            "amount": refunded,
                            "currency": "INR",
                            "payment_id": payment_id,
                            "status": "processed",
                        }
                    },
                    "payment": {
                        "entity": {
                            **payment,
                            "amount_refunded": refunded,
                            "status": "refunded" if refunded == paid else "captured",
                            "refund_status": "full" if refunded == paid else "partial",
                        }
                    },
                },
            }
        ).encode()

    partial = refund(paid // 2, "rfnd_1")
    assert (
        post_razorpay(client, partial, razorpay_signature(partial), "e2").get_json()["outcome"]
        == "partial_refund"
    )
    full = refund(paid, "rfnd_2")
    assert (
        post_razorpay(client, full, razorpay_signature(full), "e3").get_json()["outcome"]
        == "canceled"
    )
    join_deliveries()
    [canceled] = _canceled(order_receiver)
    assert canceled["cancel"]["amount_refunded"] == paid
    assert canceled["cancel"]["payment_reference"] == payment_id
    assert canceled["currency"] == "inr"
