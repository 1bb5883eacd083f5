"""Provider webhook events drive the same checkout domain (shown with the offline test provider)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from shop import clock
from shop.storage import expiry
from tests.conftest import assert_acp, cart
from tests.offline_events import post_offline_event


def _event(client, event_id: str, type_: str, session_id: str | None, reference: str = "pay_1"):
    body = {"id": event_id, "type": type_, "reference": reference}
    if session_id:
        body["session_id"] = session_id
    return post_offline_event(client, body)


def _outcome(client, event_id: str, type_: str, session_id: str | None, reference: str = "pay_1"):
    return _event(client, event_id, type_, session_id, reference).get_json()["outcome"]


def _stock(app, item_id: str) -> int | None:
    from shop.checkout import stock
    from shop.state import get_state

    with app.app_context():
        return stock.available_quantities(get_state().catalog)[item_id]


def _row(app, session_id: str):
    from shop.storage.models import CheckoutSession, db

    with app.app_context():
        row = db.session.get(CheckoutSession, session_id)
        db.session.expunge(row)
        return row


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.02)


def _together(app, *events: tuple[str, str, str | None, str]) -> list[str]:
    """Deliver events at the same moment from separate threads; return their outcomes."""
    start, outcomes = threading.Barrier(len(events)), []

    def deliver(event: tuple[str, str, str | None, str]) -> None:
        client = app.test_client()
        start.wait()
        outcomes.append(_outcome(client, *event))

    threads = [threading.Thread(target=deliver, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return sorted(outcomes)


def test_pending_payment_completed_by_webhook(acp, app, client):
    created = acp.create(cart(("scarce", 1))).get_json()
    pending = acp.complete(created["id"], "tok_pending").get_json()
    assert_acp(pending, "CheckoutSession")
    assert pending["status"] == "in_progress"
    assert _stock(app, "scarce") == 4
    response = _event(client, "evt_1", "payment.succeeded", created["id"])
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "completed"
    body = acp.get(f"/checkout_sessions/{created['id']}").get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    sink = app.extensions["shop"].sink
    _wait_for(lambda: sink.orders)
    assert len(sink.orders) == 1


def test_duplicate_event_does_nothing(acp, app, client):
    created = acp.create(cart(("scarce", 1))).get_json()
    acp.complete(created["id"], "tok_pending")
    assert _outcome(client, "evt_dup", "payment.succeeded", created["id"]) == "completed"
    assert _outcome(client, "evt_dup", "payment.succeeded", created["id"]) == "duplicate"
    assert _outcome(client, "evt_other", "payment.succeeded", created["id"]) == (
        "already_completed"
    )
    sink = app.extensions["shop"].sink
    _wait_for(lambda: sink.orders)
    time.sleep(0.2)
    assert len(sink.orders) == 1


def test_the_same_event_delivered_twice_at_once_applies_once(acp, app):
    created = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(created["id"], "tok_chargeDeclined")  # the stock went back
    assert _stock(app, "scarce") == 5
    event = ("evt_twice", "payment.succeeded", created["id"], "pay_late")

    assert _together(app, event, event) == ["completed", "duplicate"]
    assert _stock(app, "scarce") == 3


def test_two_paid_events_at_once_take_the_stock_once(acp, app):
    # A payment after a decline takes the stock again: the flag flip decides who reserves.
    # Two different payments for one session: the second is a duplicate, refunded.
    created = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(created["id"], "tok_chargeDeclined")
    assert _row(app, created["id"]).stock_reserved == 0

    outcomes = _together(
        app,
        ("evt_a", "payment.succeeded", created["id"], "pay_a"),
        ("evt_b", "payment.succeeded", created["id"], "pay_b"),
    )

    assert outcomes == ["completed", "duplicate_refunded"]
    assert _stock(app, "scarce") == 3
    assert _row(app, created["id"]).stock_reserved == 1


def test_payment_for_a_session_whose_stock_is_gone_completes_oversold(acp, app, client, caplog):
    first = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(first["id"], "tok_chargeDeclined")
    other = acp.create(cart(("scarce", 5))).get_json()
    assert acp.complete(other["id"]).get_json()["status"] == "completed"
    assert _stock(app, "scarce") == 0

    with caplog.at_level(logging.ERROR):
        outcome = _outcome(client, "evt_paid", "payment.succeeded", first["id"], "pay_late")

    assert outcome == "completed"  # the money was taken: the order is never lost
    assert _stock(app, "scarce") == 0  # nothing taken that was not there
    row = _row(app, first["id"])
    assert (row.status, row.stock_reserved) == ("completed", 0)
    assert any(
        "OVERSOLD" in r.getMessage() and first["id"] in r.getMessage() for r in caplog.records
    )


def test_failed_event_releases_stock_and_reopens(acp, app, client):
    created = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(created["id"], "tok_pending")
    assert _stock(app, "scarce") == 3
    reference = _row(app, created["id"]).payment_reference
    assert _outcome(client, "evt_f", "payment.failed", created["id"], reference) == (
        "payment_failed"
    )
    assert _stock(app, "scarce") == 5
    body = acp.get(f"/checkout_sessions/{created['id']}").get_json()
    assert body["status"] == "ready_for_payment"
    assert body["messages"][0]["code"] == "payment_declined"
    assert acp.complete(created["id"], "tok_visa").get_json()["status"] == "completed"


def test_failure_of_another_payment_leaves_a_paying_session_alone(acp, app, client):
    created = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(created["id"], "tok_chargeDeclined")
    acp.complete(created["id"], "tok_pending")
    outcome = _outcome(client, "evt_old", "payment.failed", created["id"], "pay_earlier_attempt")
    assert outcome == "ignored_other_attempt"
    assert _row(app, created["id"]).status == "in_progress"
    assert _stock(app, "scarce") == 3
    assert _outcome(client, "evt_none", "payment.failed", created["id"], "") == (
        "ignored_other_attempt"  # a failure naming no payment cannot be this attempt's
    )


def test_late_failure_never_unpays(acp, app, client):
    created = acp.create(cart(("scarce", 1))).get_json()
    acp.complete(created["id"], "tok_pending")
    reference = _row(app, created["id"]).payment_reference
    _event(client, "evt_ok", "payment.succeeded", created["id"], reference)
    outcome = _outcome(client, "evt_late", "payment.failed", created["id"], reference)
    assert outcome == "ignored_in_status:completed"
    assert acp.get(f"/checkout_sessions/{created['id']}").get_json()["status"] == "completed"
    assert _stock(app, "scarce") == 4


def test_paid_without_session_is_logged_loudly(client, caplog):
    with caplog.at_level(logging.ERROR):
        outcome = _event(client, "evt_x", "payment.succeeded", None, "pay_orphan").get_json()
    assert outcome["outcome"] == "paid_without_session"
    assert any(
        "pay_orphan" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def test_dispute_flags_and_tells_the_sink(acp, app, client, caplog):
    created = acp.create().get_json()
    acp.complete(created["id"])
    with caplog.at_level(logging.ERROR):
        assert _outcome(client, "evt_d", "payment.disputed", created["id"]) == "flagged"
    assert _outcome(client, "evt_d2", "payment.disputed", created["id"]) == "already_flagged"
    sink = app.extensions["shop"].sink
    _wait_for(lambda: len(sink.orders) >= 2)
    flagged = [o for o in sink.orders if o.get("event") == "order.flagged"]
    assert [o["flag"]["reason"] for o in flagged] == ["dispute"]
    assert any("DISPUTE" in r.getMessage() for r in caplog.records)


def test_webhook_for_other_provider_is_404(client):
    response = client.post("/webhooks/stripe", data="{}", content_type="application/json")
    assert response.status_code == 404
    assert "paymentProvider" in response.get_json()["error"]


def test_unreadable_event_is_400_and_counted_as_malformed(client):
    response = post_offline_event(client, b"nope")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("malformed event")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'shop_webhook_malformed_total{provider="test"} 1' in metrics
    assert 'shop_webhook_signature_failures_total{provider="test"}' not in metrics


def test_purge_forgets_provider_events_after_the_retention_window(app, client, monkeypatch):
    from shop.checkout import retention
    from shop.storage.models import ProviderEvent, db

    real_now = clock.now

    def at(seconds: int) -> None:
        monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=seconds))

    assert _outcome(client, "evt_old", "payment.succeeded", None) == "paid_without_session"
    at(expiry.PROVIDER_EVENT_RETENTION_SECONDS - 60)
    assert _outcome(client, "evt_new", "payment.succeeded", None) == "paid_without_session"
    with app.app_context():
        # both are younger than the window
        assert retention.purge(app.extensions["shop"]).provider_events == 0
    assert _outcome(client, "evt_old", "payment.succeeded", None) == "duplicate"
    at(expiry.PROVIDER_EVENT_RETENTION_SECONDS + 60)
    with app.app_context():
        assert retention.purge(app.extensions["shop"]).provider_events == 1
        assert db.session.execute(db.select(ProviderEvent.id)).scalars().all() == ["test:evt_new"]
    # The forgotten id is new again; the state machine (forward-only) keeps that harmless.
    assert _outcome(client, "evt_old", "payment.succeeded", None) == "paid_without_session"
