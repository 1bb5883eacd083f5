"""Create and update skip the Idempotency-Key look-up before they run (issue 12: one read
fewer per request) when the provider makes nothing on the way: their record is inserted
`done` with their change, so a known key makes that insert fail, the rerun's change rolls
back and the stored answer is given, exactly as the look-up would have given it. With
Razorpay, which makes an order when a session becomes ready, they still look first, so a
retry never makes a second Razorpay order."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from shop import checkout
from shop.api import idempotency
from tests.conftest import ADDRESS_OR, cart
from tests.fake_psp import FakePSP
from tests.psp_app import agent, provider_app

ORDERS = "/v1/orders"


@pytest.fixture
def look_ups(monkeypatch) -> list[str]:
    """The keys idempotency looked up, in order."""
    seen: list[str] = []
    real = idempotency._known

    def counting(scope: str, key: str, fingerprint: str) -> Any:
        seen.append(key)
        return real(scope, key, fingerprint)

    monkeypatch.setattr(idempotency, "_known", counting)
    return seen


def _sessions(db_path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM checkout_sessions").fetchone()[0]


def test_a_retried_create_gets_the_stored_answer_and_makes_no_second_session(
    acp, look_ups, shop_files
):
    first = acp.create(key="c1")
    assert first.status_code == 201 and look_ups == []  # nothing read before it ran
    again = acp.create(key="c1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert look_ups == ["c1"]  # read once, after its insert found the key taken
    assert _sessions(shop_files["db"]) == 1


def test_a_retried_update_gets_the_stored_answer(acp, look_ups):
    created = acp.create().get_json()
    path = f"/checkout_sessions/{created['id']}"
    first = acp.post(path, {"coupons": ["TEN"]}, key="u1")
    assert first.status_code == 200
    moved = acp.post(path, {"coupons": []}).get_json()  # the session moved on since
    assert moved["totals"] != first.get_json()["totals"]
    again = acp.post(path, {"coupons": ["TEN"]}, key="u1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert acp.get(path).get_json()["totals"] == moved["totals"]  # the rerun rolled back


def test_the_same_key_with_another_body_is_still_422(acp):
    assert acp.create(cart(("widget", 1)), key="k").status_code == 201
    other = acp.create(cart(("widget", 2)), key="k")
    assert other.status_code == 422
    assert other.get_json()["code"] == "idempotency_conflict"


def test_a_retry_whose_rerun_fails_still_gets_the_stored_answer(acp, monkeypatch, shop_files):
    first = acp.create(key="flaky-later")
    assert first.status_code == 201

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database fell over during the rerun")

    monkeypatch.setattr(checkout, "create_session", boom)
    again = acp.create(key="flaky-later")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert acp.create(key="a-new-key").status_code == 500  # a new key still fails as it is
    assert _sessions(shop_files["db"]) == 1


def test_with_razorpay_a_retried_create_looks_up_first_and_makes_no_second_order(
    make_app, fake_psp: FakePSP, look_ups
):
    razorpay = agent(provider_app(make_app, fake_psp, "razorpay"))
    body = cart(("widget", 1), address=ADDRESS_OR, currency="inr")
    first = razorpay.create(body, key="r1")
    assert first.get_json()["status"] == "ready_for_payment"
    again = razorpay.create(body, key="r1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert look_ups == ["r1", "r1"]  # before each run
    assert len(fake_psp.sent("POST", ORDERS)) == 1


def _sessions_created(client: Any) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    [line] = [x for x in text.splitlines() if x.startswith("shop_sessions_created_total ")]
    return float(line.split()[1])


def test_a_rerun_rolled_back_counts_no_session_created(acp, client):
    before = _sessions_created(client)
    acp.create(key="m1")
    acp.create(key="m1")  # replayed: its rerun's session rolled back
    acp.create(cart(("widget", 3)), key="m1")  # 422: rolled back too
    assert _sessions_created(client) == before + 1
