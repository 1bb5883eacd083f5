"""Orders out, end to end: ACP checkout over HTTP -> outbox -> the real WebhookSink -> a
loopback receiver that verifies signatures the way a merchant does (tests/receiver.py).

The app builds its sinks from config and environment, as in production. Hand-offs run on a
background thread; `join_deliveries()` waits for them, and retries are driven by
`delivery.sweep` with the clock moved past the backoff (the sweeper thread is off in tests).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from shop import clock, orders
from shop.checkout import retention
from shop.orders import retry_schedule
from shop.orders.sinks import WebhookSink
from tests.conftest import (
    ADDRESS_CA,
    FROM_CONFIG,
    AcpClient,
    RecordingSink,
    cart,
    join_deliveries,
)
from tests.offline_events import post_offline_event
from tests.order_schemas import MERCHANT_SIGNATURE, PAYLOAD_SCHEMA, ROOT, WEBHOOK_EVENT

FAST = 1.0  # seconds: /complete must answer within this whatever the receiver does


@pytest.fixture
def later(monkeypatch):
    """Move the clock forward by a number of seconds (past a retry's backoff)."""
    real_now = clock.now

    def move(seconds: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=seconds))

    return move


@pytest.fixture
def shop(make_app, order_receiver):
    """Return a factory for apps whose order sink is built from config, aimed at the receiver."""

    def build(env: dict[str, str] | None = None, config: dict[str, Any] | None = None):
        return make_app(
            config={"orderWebhookUrl": order_receiver.url, **(config or {})},
            env={"ORDER_WEBHOOK_SECRET": order_receiver.secret, **(env or {})},
            sink=FROM_CONFIG,
        )

    return build


def _checkout(
    app, body: dict[str, Any], token: str = "tok_visa", update: dict[str, Any] | None = None
) -> tuple[dict[str, Any], float]:
    """Create (and update) a session through the ACP API, complete it; return (body, seconds)."""
    acp = AcpClient(app.test_client())
    created = acp.create(body)
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]
    if update:
        updated = acp.post(f"/checkout_sessions/{session_id}", update)
        assert updated.status_code == 200, updated.get_json()
    started = time.perf_counter()
    completed = acp.complete(session_id, token)
    elapsed = time.perf_counter() - started
    assert completed.status_code == 200, completed.get_json()
    return completed.get_json(), elapsed


def _rows(app, session_id: str) -> list[dict[str, Any]]:
    """Return the session's outbox rows once every hand-off thread has finished."""
    from shop.storage.models import OrderDelivery, db

    join_deliveries()
    with app.app_context():
        rows = db.session.execute(
            db.select(OrderDelivery)
            .where(OrderDelivery.session_id == session_id)
            .order_by(OrderDelivery.id)
        ).scalars()
        return [
            {
                "to": r.destination,
                "event": r.event,
                "state": r.state,
                "attempts": r.attempts,
                "error": r.last_error or "",
            }
            for r in rows
        ]


def _sweep(app) -> int:
    with app.app_context():
        return orders.sweep(app.extensions["shop"])


def _attempts(app, session_id: str) -> int:
    return sum(r["attempts"] for r in _rows(app, session_id))


def _event(app, event_id: str, type_: str, session_id: str, **extra: Any) -> str:
    body = {
        "id": event_id,
        "type": type_,
        "session_id": session_id,
        "reference": "pay_evt",
        **extra,
    }
    response = post_offline_event(app.test_client(), body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


def _failures(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "shop.delivery" and r.levelno == logging.ERROR
    ]


# --- what arrives ---------------------------------------------------------------------------


def test_physical_order_with_tax_and_express_shipping(shop, order_receiver):
    app = shop()
    express = {
        "selected_fulfillment_options": [
            {"type": "shipping", "option_id": "express", "item_ids": ["li_1"]}
        ]
    }
    body, elapsed = _checkout(app, cart(("widget", 2), address=ADDRESS_CA), update=express)
    assert body["status"] == "completed" and elapsed < FAST
    order_id, session_id = body["order"]["id"], body["id"]
    assert _rows(app, session_id) == [
        {
            "to": "merchant",
            "event": "order.created",
            "state": "delivered",
            "attempts": 1,
            "error": "",
        }
    ]
    [received] = order_receiver.requests
    assert received.verified and received.status == 200
    assert received.headers["Idempotency-Key"] == order_id
    assert received.headers["Content-Type"] == "application/json"
    order = received.json()
    PAYLOAD_SCHEMA.validate(order)
    assert order["event"] == "order.created"
    assert order["order"] == {
        "id": order_id,
        "checkout_session_id": session_id,
        "permalink_url": f"https://store.test/orders/{order_id}",
    }
    tax = 435  # 7.25 % CA tax on 2 x 29.99, half up; shipping is not taxable here
    assert order["line_items"] == [
        {
            "id": "li_1",
            "item_id": "widget",
            "title": "Premium Widget",
            "quantity": 2,
            "unit_amount": 2999,
            "tax": tax,
            "total": 5998 + tax,
        }
    ]
    totals = {t["type"]: t["amount"] for t in order["totals"]}
    assert totals["tax"] == tax and totals["fulfillment"] == 1500
    assert totals["total"] == 5998 + 1500 + tax
    assert totals == {t["type"]: t["amount"] for t in body["totals"]}  # what the agent saw
    assert order["fulfillment"] == {
        "option": {"id": "express", "title": "Express", "amount": 1500},
        "address": ADDRESS_CA,
    }
    assert order["currency"] == "usd" and order["buyer"]["email"] == "jane@example.com"
    with app.app_context():
        from shop.storage.models import CheckoutSession, db

        charged = db.session.get(CheckoutSession, session_id)
        assert order["payment"] == {"provider": "test", "reference": charged.payment_reference}
        assert charged.amount_paid == totals["total"]


def test_digital_variant_order_names_the_variant_and_ships_nothing(shop, order_receiver):
    app = shop()
    body, _ = _checkout(app, cart(("ebook-team", 1), address=None))
    assert body["status"] == "completed"
    _rows(app, body["id"])
    [order] = order_receiver.orders
    PAYLOAD_SCHEMA.validate(order)
    assert order_receiver.deliveries[0].verified
    assert [
        (li["item_id"], li["unit_amount"], li["tax"], li["total"]) for li in order["line_items"]
    ] == [("ebook-team", 6000, 0, 6000)]
    assert order["fulfillment"] is None
    assert {t["type"]: t["amount"] for t in order["totals"]}["total"] == 6000
    assert "tax" not in {t["type"] for t in order["totals"]}


def test_without_a_secret_orders_go_unsigned_and_start_up_says_so(
    make_app, make_order_receiver, caplog
):
    receiver = make_order_receiver(secret=None)
    with caplog.at_level(logging.WARNING, logger="shop"):
        app = make_app(config={"orderWebhookUrl": receiver.url}, sink=FROM_CONFIG)
    assert any("UNSIGNED" in r.getMessage() for r in caplog.records)
    body, _ = _checkout(app, cart())
    _rows(app, body["id"])
    [received] = receiver.deliveries
    assert "Signature" not in received.headers
    assert received.headers["Idempotency-Key"] == body["order"]["id"]


def test_without_a_url_every_order_is_logged_loudly_and_start_up_warns(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="shop"):
        app = make_app(sink=FROM_CONFIG)  # tests/data/config.json has no orderWebhookUrl
        assert any(
            "NO ORDER DESTINATION" in r.getMessage() and "LOST" in r.getMessage()
            for r in caplog.records
        )
        caplog.clear()
        first, _ = _checkout(app, cart())
        second, _ = _checkout(app, cart(("ebook-single", 1), address=None))
        join_deliveries()
    warnings = [r.getMessage() for r in caplog.records if "ORDER NOT DELIVERED" in r.getMessage()]
    assert len(warnings) == 2
    for body in (first, second):
        assert any(body["order"]["id"] in w and body["id"] in w for w in warnings)
        [row] = _rows(app, body["id"])
        assert (row["state"], row["attempts"]) == ("dropped", 1)
    # The whole order is in the line, so the log alone could rebuild it.
    logged = json.loads(warnings[0].split("order=", 1)[1])
    PAYLOAD_SCHEMA.validate(logged)
    assert logged["order"]["id"] == first["order"]["id"]


def test_a_dropped_order_is_logged_as_the_bytes_a_replay_sends(make_app, order_receiver, caplog):
    app = make_app(sink=FROM_CONFIG)  # no orderWebhookUrl: LogSink
    with caplog.at_level(logging.WARNING, logger="shop"):
        body, _ = _checkout(app, cart())
        join_deliveries()
    [logged] = [
        r.getMessage().split("order=", 1)[1]
        for r in caplog.records
        if "ORDER NOT DELIVERED" in r.getMessage()
    ]
    restarted = make_app(
        config={"orderWebhookUrl": order_receiver.url},
        env={"ORDER_WEBHOOK_SECRET": order_receiver.secret},
        sink=FROM_CONFIG,
    )
    replayed = restarted.test_cli_runner().invoke(args=["orders", "replay", body["id"]])
    assert replayed.exit_code == 0, replayed.output
    [sent] = order_receiver.deliveries
    assert sent.raw == logged.encode()  # the log holds exactly what the row holds


def test_dropped_orders_are_listed_and_replayed_once_a_url_is_set(make_app, order_receiver):
    app = make_app(sink=FROM_CONFIG)  # no orderWebhookUrl: LogSink
    first, _ = _checkout(app, cart())
    second, _ = _checkout(app, cart(("ebook-single", 1), address=None))
    assert [_rows(app, b["id"])[0]["state"] for b in (first, second)] == ["dropped", "dropped"]
    assert _sweep(app) == 0  # nobody to send to: dropped orders are not retried by themselves

    listed = app.test_cli_runner().invoke(args=["orders", "failed"])
    assert listed.exit_code == 0
    assert "every order has been delivered" not in listed.output
    for body in (first, second):
        line = next(x for x in listed.output.splitlines() if body["id"] in x)
        assert body["order"]["id"] in line and "dropped" in line and "kept until" in line
    assert "orderWebhookUrl" in listed.output and "orders replay" in listed.output

    still = app.test_cli_runner().invoke(args=["orders", "replay", first["id"]])
    assert still.exit_code != 0 and "orderWebhookUrl" in still.output
    assert _rows(app, first["id"])[0]["state"] == "dropped"

    restarted = make_app(
        config={"orderWebhookUrl": order_receiver.url},
        env={"ORDER_WEBHOOK_SECRET": order_receiver.secret},
        sink=FROM_CONFIG,
    )
    runner = restarted.test_cli_runner()
    one = runner.invoke(args=["orders", "replay", first["id"]])
    assert one.exit_code == 0, one.output
    assert [o["order"]["id"] for o in order_receiver.orders] == [first["order"]["id"]]
    rest = runner.invoke(args=["orders", "replay", "--dropped"])
    assert rest.exit_code == 0, rest.output
    assert [o["order"]["id"] for o in order_receiver.orders] == [
        first["order"]["id"],
        second["order"]["id"],
    ]
    assert all(d.verified for d in order_receiver.deliveries)
    assert "every order has been delivered" in runner.invoke(args=["orders", "failed"]).output
    assert runner.invoke(args=["orders", "replay", "--dropped"]).output.strip() == (
        "no dropped orders"
    )
    assert runner.invoke(args=["orders", "replay"]).exit_code == 2  # neither an id nor --dropped


# --- when the receiver fails ----------------------------------------------------------------


def test_receiver_500_is_logged_listed_retried_and_replayable(shop, order_receiver, later, caplog):
    order_receiver.mode = "error"
    app = shop()
    with caplog.at_level(logging.ERROR, logger="shop.delivery"):
        body, elapsed = _checkout(app, cart())
        rows = _rows(app, body["id"])
    print(f"/complete with a receiver answering 500: {elapsed * 1000:.1f} ms")
    assert body["status"] == "completed" and elapsed < FAST
    order_id, session_id = body["order"]["id"], body["id"]
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 1)]
    [line] = _failures(caplog)
    assert "ORDER DELIVERY FAILED" in line and "\n" not in line
    assert order_id in line and session_id in line and "HTTP 500" in line

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["orders", "failed"])
    assert listed.exit_code == 0
    assert session_id in listed.output and order_id in listed.output
    assert "failed" in listed.output and "HTTP 500" in listed.output

    order_receiver.mode = "ok"
    assert _sweep(app) == 0  # the backoff has not passed yet
    later(retry_schedule.backoff(1) + 1)
    assert _sweep(app) == 1
    assert [o["order"]["id"] for o in order_receiver.orders] == [order_id]
    assert _rows(app, session_id)[0]["state"] == "delivered"
    assert "every order has been delivered" in runner.invoke(args=["orders", "failed"]).output

    replayed = runner.invoke(args=["orders", "replay", session_id])
    assert replayed.exit_code == 0, replayed.output
    assert f"order.created {order_id} -> merchant: delivered" in replayed.output
    again = order_receiver.requests[-1]
    assert again.verified and again.duplicate  # same order id: the receiver's dedupe holds
    assert again.raw == order_receiver.deliveries[0].raw
    assert len(order_receiver.deliveries) == 1


def test_replay_recovers_a_failed_order(shop, order_receiver):
    order_receiver.mode = "error"
    app = shop()
    body, _ = _checkout(app, cart())
    order_id, session_id = body["order"]["id"], body["id"]
    assert [(r["state"], r["attempts"]) for r in _rows(app, session_id)] == [("failed", 1)]
    runner = app.test_cli_runner()
    failing = runner.invoke(args=["orders", "replay", session_id])
    assert failing.exit_code != 0
    assert f"order.created {order_id} -> merchant: failed" in failing.output

    order_receiver.mode = "ok"  # the merchant fixed the receiver; no waiting for the backoff
    replayed = runner.invoke(args=["orders", "replay", session_id])
    assert replayed.exit_code == 0, replayed.output
    assert f"order.created {order_id} -> merchant: delivered" in replayed.output
    assert [(r["state"], r["attempts"]) for r in _rows(app, session_id)] == [("delivered", 3)]
    [delivered] = order_receiver.deliveries
    assert delivered.verified and delivered.json()["order"]["id"] == order_id
    assert [r.status for r in order_receiver.requests] == [500, 500, 200]
    assert "every order has been delivered" in runner.invoke(args=["orders", "failed"]).output


def test_hanging_receiver_times_out_without_slowing_complete(shop, order_receiver, later):
    order_receiver.mode, order_receiver.hang_seconds = "hang", 3
    app = shop(env={"ORDER_WEBHOOK_TIMEOUT": "0.3"})
    sink = app.extensions["shop"].sink
    assert isinstance(sink, WebhookSink) and sink.timeout == 0.3
    body, elapsed = _checkout(app, cart())
    print(f"/complete with a receiver hanging 3 s (timeout 0.3 s): {elapsed * 1000:.1f} ms")
    assert body["status"] == "completed" and elapsed < FAST
    [row] = _rows(app, body["id"])
    assert row["state"] == "failed" and "within 0.3s" in row["error"]
    order_receiver.mode = "ok"
    later(retry_schedule.backoff(1) + 1)
    assert _sweep(app) == 1
    assert _rows(app, body["id"])[0]["state"] == "delivered"
    # The hung first request may still land late; the receiver's dedupe makes it a no-op.
    assert [o["order"]["id"] for o in order_receiver.wait_for(1)] == [body["order"]["id"]]


def test_slow_receiver_within_the_timeout_does_not_slow_checkouts(shop, order_receiver):
    order_receiver.mode, order_receiver.hang_seconds = "hang", 5
    app = shop()  # the default 10 s timeout: the receiver answers 200 after 5 s
    first, elapsed = _checkout(app, cart())
    second, elapsed_while_first_waits = _checkout(app, cart())  # the first hand-off is waiting
    print(
        f"/complete with a receiver taking 5 s to answer: {elapsed * 1000:.1f} ms, "
        f"{elapsed_while_first_waits * 1000:.1f} ms"
    )
    assert first["status"] == second["status"] == "completed"
    assert elapsed < FAST and elapsed_while_first_waits < FAST
    order_receiver.mode = "error"
    order_receiver.stop()  # ends the wait early with a 500: the hand-offs fail and stay queued
    assert [_rows(app, b["id"])[0]["state"] for b in (first, second)] == ["failed", "failed"]


def test_no_transaction_is_open_during_network_calls(make_app, monkeypatch):
    """On SQLite a transaction holds the write lock: never across the provider or the sink."""
    from shop.payments.offline import TestProvider
    from shop.storage.models import db

    seen: dict[str, bool] = {}
    real_charge = TestProvider.charge

    def charge(self, request):
        seen["charge"] = db.session().in_transaction()
        return real_charge(self, request)

    class ProbeSink(RecordingSink):
        def deliver(self, order: dict[str, Any]) -> None:
            seen["sink"] = db.session().in_transaction()
            super().deliver(order)

    monkeypatch.setattr(TestProvider, "charge", charge)
    app = make_app(sink=ProbeSink())
    _checkout(app, cart())
    join_deliveries()
    assert seen == {"charge": False, "sink": False}


def test_receiver_down_then_back_up_gets_the_order(shop, order_receiver, later):
    app = shop()
    order_receiver.down()
    body, elapsed = _checkout(app, cart())
    assert body["status"] == "completed" and elapsed < FAST
    [row] = _rows(app, body["id"])
    assert row["state"] == "failed" and "could not reach" in row["error"]
    order_receiver.start()
    later(retry_schedule.backoff(1) + 1)
    assert _sweep(app) == 1
    assert [o["order"]["id"] for o in order_receiver.orders] == [body["order"]["id"]]
    assert order_receiver.deliveries[0].verified


# --- a paid session is never stranded ------------------------------------------------------


def test_item_removed_while_payment_pending_still_completes_and_sends(
    shop, order_receiver, shop_files, caplog
):
    app = shop()
    pending, _ = _checkout(app, cart(("scarce", 2)), token="tok_pending")
    assert pending["status"] == "in_progress"
    products = json.loads(shop_files["products"].read_text())
    shop_files["products"].write_text(json.dumps([p for p in products if p["id"] != "scarce"]))
    restarted = shop()  # the merchant dropped the product and restarted before the PSP answered
    with caplog.at_level(logging.ERROR, logger="shop.checkout"):
        assert (
            _event(restarted, "evt_paid", "payment.succeeded", pending["id"], amount=2500)
            == "completed"
        )
    assert any(
        "ORDER PAYLOAD FAILED" in r.getMessage() and pending["id"] in r.getMessage()
        for r in caplog.records
    )
    _rows(restarted, pending["id"])
    [order] = order_receiver.orders
    PAYLOAD_SCHEMA.validate(order)
    assert [(li["item_id"], li["quantity"]) for li in order["line_items"]] == [("scarce", 2)]
    assert order["totals"] == [{"type": "total", "display_text": "Total paid", "amount": 2500}]
    assert order["payment"] == {"provider": "test", "reference": "pay_evt"}
    assert order["fulfillment"]["address"]["postal_code"] == "97201"


# --- the agent platform (ACP order events) --------------------------------------------------


def test_acp_order_events_and_dispute_flag(shop, order_receiver):
    app = shop(
        env={
            "ACP_WEBHOOK_URL": order_receiver.acp_url,
            "ACP_WEBHOOK_SECRET": order_receiver.acp_secret,
        }
    )
    body, _ = _checkout(app, cart(("widget", 1), address=ADDRESS_CA))
    order_id, session_id = body["order"]["id"], body["id"]
    assert {(r["to"], r["event"], r["state"]) for r in _rows(app, session_id)} == {
        ("merchant", "order.created", "delivered"),
        ("agent", "order_create", "delivered"),
    }
    created = _by_path(order_receiver, "/agentic_checkout/webhooks/order_events")
    assert len(created) == 1 and created[0].verified
    assert MERCHANT_SIGNATURE.fullmatch(created[0].headers["Merchant-Signature"])
    event = created[0].json()
    WEBHOOK_EVENT.validate(event)
    assert event["type"] == "order_create"
    assert event["data"]["id"] == order_id and event["data"]["status"] == "confirmed"
    assert event["data"]["fulfillments"][0]["destination"] == ADDRESS_CA

    assert _event(app, "evt_dispute", "payment.disputed", session_id) == "flagged"
    assert {(r["to"], r["event"], r["state"]) for r in _rows(app, session_id)} == {
        ("merchant", "order.created", "delivered"),
        ("agent", "order_create", "delivered"),
        ("merchant", "order.flagged", "delivered"),
        ("agent", "order_update:manual_review", "delivered"),
    }
    flagged = [
        r for r in _by_path(order_receiver, "/hooks/orders") if r.json()["event"] == "order.flagged"
    ]
    assert len(flagged) == 1 and flagged[0].verified and not flagged[0].duplicate
    assert flagged[0].headers["Idempotency-Key"] == f"{order_id}:order.flagged"
    PAYLOAD_SCHEMA.validate(flagged[0].json())
    assert flagged[0].json()["flag"] == {"reason": "dispute", "payment_reference": "pay_evt"}
    update = _by_path(order_receiver, "/agentic_checkout/webhooks/order_events")[-1]
    assert update.verified
    WEBHOOK_EVENT.validate(update.json())
    assert update.json()["type"] == "order_update"
    assert update.json()["data"]["status"] == "manual_review"
    assert len(order_receiver.deliveries) == 4  # created + flagged, to each destination


def _by_path(receiver, path: str) -> list:
    return [r for r in receiver.requests if r.path == path]


def test_agent_platform_failure_is_retried_apart_from_the_merchant(
    shop, order_receiver, make_order_receiver, later, caplog
):
    platform = make_order_receiver()
    platform.mode = "error"
    app = shop(env={"ACP_WEBHOOK_URL": platform.acp_url, "ACP_WEBHOOK_SECRET": platform.acp_secret})
    with caplog.at_level(logging.ERROR, logger="shop.delivery"):
        body, elapsed = _checkout(app, cart(("widget", 1), address=ADDRESS_CA))
        rows = _rows(app, body["id"])
    assert body["status"] == "completed" and elapsed < FAST
    assert {(r["to"], r["event"], r["state"]) for r in rows} == {
        ("merchant", "order.created", "delivered"),
        ("agent", "order_create", "failed"),
    }
    [line] = _failures(caplog)
    assert "to=agent" in line and body["order"]["id"] in line and "HTTP 500" in line
    [refused] = platform.requests
    assert refused.verified and refused.status == 500  # signed right; the platform was down
    listed = app.test_cli_runner().invoke(args=["orders", "failed"]).output
    assert "order_create -> agent  failed" in listed

    platform.mode = "ok"
    later(retry_schedule.backoff(1) + 1)
    assert _sweep(app) == 1
    assert {(r["event"], r["state"], r["attempts"]) for r in _rows(app, body["id"])} == {
        ("order.created", "delivered", 1),
        ("order_create", "delivered", 2),
    }
    [event] = platform.deliveries
    assert event.verified and MERCHANT_SIGNATURE.fullmatch(event.headers["Merchant-Signature"])
    assert event.json()["type"] == "order_create"
    assert event.json()["data"]["id"] == body["order"]["id"]
    assert len(order_receiver.deliveries) == 1  # the merchant's order was not sent again


# --- the retry schedule, giving up, and how long an undelivered order is kept ----------------


def test_retries_follow_the_schedule_then_give_up_logging_the_whole_order(
    shop, order_receiver, later, caplog
):
    order_receiver.mode = "error"
    app = shop()
    with caplog.at_level(logging.ERROR, logger="shop"):
        body, _ = _checkout(app, cart(("widget", 2), address=ADDRESS_CA))
        order_id, session_id = body["order"]["id"], body["id"]
        assert _attempts(app, session_id) == 1
        offset = 0
        for attempt, delay in enumerate(retry_schedule.RETRY_DELAYS, start=1):
            later(offset + delay - 3)
            _sweep(app)
            assert _attempts(app, session_id) == attempt  # not due before its backoff
            offset += delay + 2
            later(offset)
            _sweep(app)
            assert _attempts(app, session_id) == attempt + 1
        assert offset - 2 * len(retry_schedule.RETRY_DELAYS) == retry_schedule.GIVE_UP_AFTER_SECONDS
        [row] = _rows(app, session_id)
        assert (row["state"], row["attempts"]) == ("gave_up", retry_schedule.MAX_ATTEMPTS)
        later(offset + 10 * 86400)
        assert _sweep(app) == 0 and _attempts(app, session_id) == retry_schedule.MAX_ATTEMPTS

    assert len(order_receiver.requests) == retry_schedule.MAX_ATTEMPTS
    lines = _failures(caplog)
    assert len(lines) == retry_schedule.MAX_ATTEMPTS
    assert all(order_id in x and session_id in x for x in lines)
    assert ["GIVING UP" in x for x in lines] == [False] * (retry_schedule.MAX_ATTEMPTS - 1) + [True]
    # The give-up line carries the whole order: nothing is lost even after the purge below.
    assert json.loads(lines[-1].split("payload=", 1)[1]) == order_receiver.requests[0].json()

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["orders", "failed"]).output
    kept_until = clock.iso(clock.epoch() - 10 * 86400 + retention.UNDELIVERED_KEEP_SECONDS)
    assert f"{session_id}  {order_id}  order.created -> merchant  gave_up" in listed
    assert f"kept until {kept_until[:13]}" in listed and "orders replay" in listed

    from shop.storage.models import CheckoutSession, db

    later(offset + retention.UNDELIVERED_KEEP_SECONDS - 60)  # the session expired long ago
    with caplog.at_level(logging.WARNING, logger="shop.retention"):
        caplog.clear()
        kept = runner.invoke(args=["purge"])
        assert "kept 1" in kept.output
        with app.app_context():
            assert db.session.get(CheckoutSession, session_id) is not None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        later(offset + retention.UNDELIVERED_KEEP_SECONDS + 60)
        purged = runner.invoke(args=["purge"])
        assert "deleted 1 expired session" in purged.output and "kept 0" in purged.output
    with app.app_context():
        assert db.session.get(CheckoutSession, session_id) is None
    [gone] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert gone.name == "shop.retention"
    assert order_id in gone.getMessage() and session_id in gone.getMessage()
    assert runner.invoke(args=["orders", "replay", session_id]).exit_code != 0


def test_replay_after_giving_up_is_one_more_try(shop, order_receiver, later):
    order_receiver.mode = "error"
    app = shop()
    body, _ = _checkout(app, cart())
    assert _attempts(app, body["id"]) == 1  # the first try has run
    offset = 0
    for delay in retry_schedule.RETRY_DELAYS:
        offset += delay + 2
        later(offset)
        _sweep(app)
    assert _rows(app, body["id"])[0]["state"] == "gave_up"
    runner = app.test_cli_runner()
    assert runner.invoke(args=["orders", "replay", body["id"]]).exit_code != 0
    assert _rows(app, body["id"])[0]["state"] == "gave_up"  # no new round of automatic retries
    order_receiver.mode = "ok"
    assert runner.invoke(args=["orders", "replay", body["id"]]).exit_code == 0
    assert _rows(app, body["id"])[0]["state"] == "delivered"
    assert [o["order"]["id"] for o in order_receiver.orders] == [body["order"]["id"]]


def test_the_schedule_is_stated_once_and_the_docs_quote_it():
    text = (ROOT / "docs" / "receiving-orders.md").read_text()
    assert retry_schedule.schedule_text() in " ".join(text.split())
    assert f"{retention.UNDELIVERED_KEEP_DAYS} days" in text
    delays = [retry_schedule.backoff(n) for n in range(1, retry_schedule.MAX_ATTEMPTS)]
    assert delays == list(retry_schedule.RETRY_DELAYS)
    assert 23 * 3600 <= retry_schedule.GIVE_UP_AFTER_SECONDS <= 25 * 3600  # "about a day"
    assert "about a day" in " ".join(retry_schedule.__doc__.split())
    # The sender's timeout stays well inside the lease, or a slow send could be sent twice.
    from shop.orders.sinks import MAX_TIMEOUT

    assert MAX_TIMEOUT * 2 <= retry_schedule.LEASE_SECONDS


@pytest.mark.parametrize("value", ["0", "-1", "soon", "7200"])
def test_sweep_interval_out_of_range_is_a_config_error(make_app, value):
    from shop.errors import ConfigError

    with pytest.raises(ConfigError, match="ORDER_SWEEP_SECONDS"):
        make_app(env={"ORDER_SWEEP_SECONDS": value})
