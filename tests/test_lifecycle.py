"""Session TTL, expiry, purge, and the stock counters and their command."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shop import clock
from tests.conftest import assert_acp, cart


@pytest.fixture
def later(monkeypatch):
    """Move the clock forward by a number of minutes."""
    real_now = clock.now

    def move(minutes: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(minutes=minutes))

    return move


def test_expired_session_answers_expired_and_cannot_complete(acp, later):
    created = acp.create().get_json()
    later(31)
    got = acp.get(f"/checkout_sessions/{created['id']}").get_json()
    assert_acp(got, "CheckoutSession")
    assert got["status"] == "expired"
    assert got["messages"][0]["code"] == "expired"
    completed = acp.complete(created["id"])
    assert completed.status_code == 200
    assert completed.get_json()["status"] == "expired"
    updated = acp.post(f"/checkout_sessions/{created['id']}", {"coupons": ["TEN"]})
    assert updated.get_json()["status"] == "expired"
    canceled = acp.post(f"/checkout_sessions/{created['id']}/cancel")
    assert canceled.status_code == 405


def test_session_alive_before_ttl(acp, later):
    created = acp.create().get_json()
    later(29)
    assert acp.complete(created["id"]).get_json()["status"] == "completed"


def test_housekeeping_and_the_purge_command_delete_expired_sessions_and_old_records(
    acp, app, runner, later
):
    from shop.checkout import retention
    from shop.storage.models import CheckoutSession, IdempotencyRecord, db

    old = acp.create().get_json()
    later(24 * 60 + 1)
    acp.create()  # an ordinary request never purges (issue 16: off the request path) ...
    with app.app_context():
        assert db.session.get(CheckoutSession, old["id"]) is not None
        db.session.rollback()
        retention.housekeep(app.extensions["shop"])  # ... the background housekeeping does
        assert db.session.get(CheckoutSession, old["id"]) is None
    stale = acp.create().get_json()
    later(24 * 60 + 1 + 120)  # past TTL + grace, and no request has run since
    with app.app_context():
        assert db.session.get(CheckoutSession, stale["id"]) is not None
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.get(CheckoutSession, stale["id"]) is None
        keys = db.session.execute(db.select(IdempotencyRecord.created_at)).scalars().all()
        assert len(keys) == 2  # the two from 2 h ago stay (24 h retention); the first is gone


class FailingSink:
    """An OrderSink whose receiver is always down."""

    def deliver(self, order: dict) -> None:
        raise ConnectionError("receiver is down")


def test_purge_keeps_undelivered_orders(make_app, later):
    from shop.storage.models import CheckoutSession, OrderDelivery, db
    from tests.conftest import AcpClient, join_deliveries

    app = make_app(sink=FailingSink())
    acp = AcpClient(app.test_client())
    created = acp.create().get_json()
    acp.complete(created["id"])
    join_deliveries()  # the hand-off has failed and been recorded before the clock moves
    with app.app_context():
        assert db.session.execute(db.select(OrderDelivery.state)).scalars().all() == ["failed"]
    later(120)
    result = app.test_cli_runner().invoke(args=["purge"])
    assert "kept 1" in result.output
    with app.app_context():
        assert db.session.get(CheckoutSession, created["id"]) is not None


def test_purge_keeps_a_dropped_order_for_the_grace_period_then_says_so(make_app, later, caplog):
    import logging

    from shop.checkout import retention
    from shop.storage.models import CheckoutSession, OrderDelivery, db
    from tests.conftest import FROM_CONFIG, AcpClient, join_deliveries

    app = make_app(sink=FROM_CONFIG)  # no orderWebhookUrl: the order is dropped
    acp = AcpClient(app.test_client())
    created = acp.create().get_json()
    order_id = acp.complete(created["id"]).get_json()["order"]["id"]
    unpaid = acp.create().get_json()
    join_deliveries()
    with app.app_context():
        assert db.session.execute(db.select(OrderDelivery.state)).scalars().all() == ["dropped"]
    runner = app.test_cli_runner()
    keep_minutes = retention.UNDELIVERED_KEEP_SECONDS / 60
    later(keep_minutes - 5)
    kept = runner.invoke(args=["purge"])
    assert "deleted 1 expired session" in kept.output and "kept 1" in kept.output
    with app.app_context():
        assert db.session.get(CheckoutSession, created["id"]) is not None
        assert db.session.get(CheckoutSession, unpaid["id"]) is None
    later(keep_minutes + 5)
    with caplog.at_level(logging.ERROR, logger="shop.retention"):
        purged = runner.invoke(args=["purge"])
    assert "deleted 1 expired session" in purged.output and "kept 0" in purged.output
    [line] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "shop.retention" and r.levelno == logging.ERROR
    ]
    assert order_id in line and created["id"] in line and "dropped" in line
    with app.app_context():
        assert db.session.get(CheckoutSession, created["id"]) is None
        assert db.session.execute(db.select(OrderDelivery)).scalars().all() == []


def test_coupons_apply_and_bad_ones_answer_messages(acp):
    body = acp.create(cart(("widget", 2), coupons=["TEN", "BOGUS", "OLD"])).get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals["discount"] == 600  # 10% of 5998, half-up
    assert totals["subtotal"] == 5398
    codes = sorted(m["code"] for m in body["messages"])
    assert codes == ["coupon_expired", "coupon_invalid"]
    assert body["discounts"]["applied"][0]["amount"] == 600
    assert {r["reason"] for r in body["discounts"]["rejected"]} == {
        "discount_code_invalid",
        "discount_code_expired",
    }


def test_amount_off_coupon_respects_minimum_and_allocates(acp):
    small = acp.create(cart(("scarce", 1), coupons=["FIVEOFF"])).get_json()
    assert small["messages"][0]["code"] == "minimum_not_met"
    big = acp.create(cart(("widget", 1), ("scarce", 1), discounts={"codes": ["fiveoff"]}))
    body = big.get_json()
    assert [li["totals"][1]["amount"] for li in body["line_items"]] == [375, 125]
    assert {t["type"]: t["amount"] for t in body["totals"]}["discount"] == 500


def test_restart_keeps_live_counts_and_file_change_restocks(make_app, shop_files):
    from shop.checkout import stock
    from shop.state import get_state
    from tests.conftest import AcpClient

    app = make_app()
    client = AcpClient(app.test_client())
    created = client.create(cart(("scarce", 2))).get_json()
    client.complete(created["id"])
    app2 = make_app()  # a restart with the same products.json
    with app2.app_context():
        assert stock.available_quantities(get_state().catalog)["scarce"] == 3
    products = json.loads(shop_files["products"].read_text())
    products[1]["inventory"] = 20
    shop_files["products"].write_text(json.dumps(products))
    app3 = make_app()
    with app3.app_context():
        levels = stock.available_quantities(get_state().catalog)
        assert levels["scarce"] == 20
        assert levels["widget"] == 100
        assert levels["ebook-team"] is None


def test_stock_command_lists_and_sets(runner, app):
    listed = runner.invoke(args=["stock"])
    assert listed.exit_code == 0
    assert "scarce" in listed.output and "unlimited" in listed.output
    set_ = runner.invoke(args=["stock", "scarce", "42"])
    assert set_.exit_code == 0
    assert "scarce                           42" in runner.invoke(args=["stock"]).output
    bad = runner.invoke(args=["stock", "nope", "1"])
    assert bad.exit_code != 0 and "not an item id" in bad.output
    unlimited = runner.invoke(args=["stock", "ebook-team", "1"])
    assert unlimited.exit_code != 0 and "unlimited" in unlimited.output
