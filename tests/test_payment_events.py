"""Provider webhook events drive the same checkout domain (shown with the offline test provider)."""

from __future__ import annotations

import json
import logging
import time

from tests.conftest import assert_acp, cart


def _event(client, event_id: str, type_: str, session_id: str | None, reference: str = "pay_1"):
    body = {"id": event_id, "type": type_, "reference": reference}
    if session_id:
        body["session_id"] = session_id
    return client.post("/webhooks/test", data=json.dumps(body), content_type="application/json")


def _stock(app, item_id: str) -> int | None:
    from shop import stock
    from shop.state import get_state

    with app.app_context():
        return stock.available_quantities(get_state().catalog)[item_id]


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.02)


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
    assert _event(client, "evt_dup", "payment.succeeded", created["id"]).get_json()[
        "outcome"] == "completed"
    assert _event(client, "evt_dup", "payment.succeeded", created["id"]).get_json()[
        "outcome"] == "duplicate"
    assert _event(client, "evt_other", "payment.succeeded", created["id"]).get_json()[
        "outcome"] == "already_completed"
    sink = app.extensions["shop"].sink
    _wait_for(lambda: sink.orders)
    time.sleep(0.2)
    assert len(sink.orders) == 1


def test_failed_event_releases_stock_and_reopens(acp, app, client):
    created = acp.create(cart(("scarce", 2))).get_json()
    acp.complete(created["id"], "tok_pending")
    assert _stock(app, "scarce") == 3
    assert _event(client, "evt_f", "payment.failed", created["id"]).get_json()[
        "outcome"] == "payment_failed"
    assert _stock(app, "scarce") == 5
    body = acp.get(f"/checkout_sessions/{created['id']}").get_json()
    assert body["status"] == "ready_for_payment"
    assert body["messages"][0]["code"] == "payment_declined"
    assert acp.complete(created["id"], "tok_visa").get_json()["status"] == "completed"


def test_late_failure_never_unpays(acp, app, client):
    created = acp.create(cart(("scarce", 1))).get_json()
    acp.complete(created["id"], "tok_pending")
    _event(client, "evt_ok", "payment.succeeded", created["id"])
    outcome = _event(client, "evt_late", "payment.failed", created["id"]).get_json()["outcome"]
    assert outcome.startswith("ignored_in_status")
    assert acp.get(f"/checkout_sessions/{created['id']}").get_json()["status"] == "completed"
    assert _stock(app, "scarce") == 4


def test_paid_without_session_is_logged_loudly(client, caplog):
    with caplog.at_level(logging.ERROR):
        outcome = _event(client, "evt_x", "payment.succeeded", None, "pay_orphan").get_json()
    assert outcome["outcome"] == "paid_without_session"
    assert any("pay_orphan" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


def test_dispute_flags_and_tells_the_sink(acp, app, client, caplog):
    created = acp.create().get_json()
    acp.complete(created["id"])
    with caplog.at_level(logging.ERROR):
        assert _event(client, "evt_d", "payment.disputed", created["id"]).get_json()[
            "outcome"] == "flagged"
    assert _event(client, "evt_d2", "payment.disputed", created["id"]).get_json()[
        "outcome"] == "already_flagged"
    sink = app.extensions["shop"].sink
    _wait_for(lambda: len(sink.orders) >= 2)
    events = [o.get("event") for o in sink.orders]
    assert "order.flagged" in events
    assert any("DISPUTE" in r.getMessage() for r in caplog.records)


def test_webhook_for_other_provider_is_404(client):
    response = client.post("/webhooks/stripe", data="{}", content_type="application/json")
    assert response.status_code == 404
    assert "paymentProvider" in response.get_json()["error"]


def test_unparseable_event_is_400_and_counted(client):
    response = client.post("/webhooks/test", data="nope", content_type="application/json")
    assert response.status_code == 400
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'shop_webhook_signature_failures_total{provider="test"}' in metrics
