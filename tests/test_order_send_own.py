"""A request sends the order it committed itself when the receiver answers quickly; an answer
that is slow to come goes on in the hand-off thread; the outbox's promises hold either way."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from shop import clock
from shop.orders import courier, retry_schedule
from shop.orders.transport import QUICK_SECONDS
from tests.conftest import FROM_CONFIG, AcpClient, cart, join_deliveries
from tests.receiver import ERROR, HANG, OK


@pytest.fixture
def quick(make_app, make_order_receiver, shop_files):
    # No schema check per body (~15 ms of CPU each): this receiver answers in about 1 ms.
    receiver = make_order_receiver(check_schema=False)
    app = make_app(
        config={"orderWebhookUrl": receiver.url},
        env={"ORDER_WEBHOOK_SECRET": receiver.secret},
        sink=FROM_CONFIG,
    )
    app.config["db_path"] = shop_files["db"]
    return app, receiver


@pytest.fixture
def thread_puts(monkeypatch) -> list[Any]:
    """Everything handed to the hand-off thread from now on (it still sends it)."""
    puts: list[Any] = []
    real_put = courier._COURIER.put

    def put(app: Any, items: list[Any]) -> None:
        puts.extend(items)
        real_put(app, items)

    monkeypatch.setattr(courier._COURIER, "put", put)
    return puts


def _created(app: Any) -> tuple[AcpClient, str]:
    acp = AcpClient(app.test_client())
    return acp, acp.create(cart(("ebook-single", 1), address=None)).get_json()["id"]


def _paid(app: Any) -> str:
    acp, session_id = _created(app)
    assert acp.complete(session_id).get_json()["status"] == "completed"
    return session_id


def _rows(app: Any) -> dict[str, tuple[str, int, int]]:
    conn = sqlite3.connect(app.config["db_path"])
    try:
        rows = conn.execute(
            "SELECT session_id, state, attempts, next_at FROM order_deliveries"
        ).fetchall()
    finally:
        conn.close()
    return {session: (state, attempts, next_at) for session, state, attempts, next_at in rows}


def _warmed(app: Any) -> str:
    """Pay once: nothing is known of a new receiver, so its first order goes by the thread."""
    first = _paid(app)
    join_deliveries()
    assert app.extensions["shop"].sink.quick, "the receiver answered within QUICK_SECONDS"
    return first


def test_an_order_to_a_quick_receiver_is_sent_by_the_request_that_took_the_payment(
    quick, thread_puts
):
    app, receiver = quick
    first = _warmed(app)
    thread_puts.clear()
    second = _paid(app)
    # No waiting: the order was at the receiver, and recorded, before complete answered.
    assert [o["order"]["checkout_session_id"] for o in receiver.orders] == [first, second]
    assert _rows(app)[second][:2] == ("delivered", 1)
    assert thread_puts == []
    assert len(receiver.requests) == 2 and all(r.verified for r in receiver.requests)


def test_a_quick_receiver_that_turns_slow_holds_a_checkout_up_by_the_patience_at_most(
    quick, thread_puts
):
    app, receiver = quick
    _warmed(app)
    thread_puts.clear()
    receiver.mode, receiver.hang_seconds = HANG, 1.5
    acp, session_id = _created(app)
    started = time.monotonic()
    assert acp.complete(session_id).get_json()["status"] == "completed"
    took = time.monotonic() - started
    # The request waited PATIENCE_SECONDS (20 ms) for the answer, then left it to the thread.
    assert took < 0.5, f"complete took {took:.2f} s behind a receiver that hangs 1.5 s"
    assert [type(item) for item in thread_puts] == [tuple]  # (message, its answer to come)
    assert _rows(app)[session_id][0] == "delivering"  # leased: still ours, still coming
    assert not app.extensions["shop"].sink.quick
    join_deliveries()
    # The thread waited for that same request's answer: sent once, recorded delivered.
    assert [o["order"]["checkout_session_id"] for o in receiver.orders][-1] == session_id
    assert sum(1 for r in receiver.requests if session_id in r.raw.decode()) == 1
    assert _rows(app)[session_id][:2] == ("delivered", 1)
    # Not quick any more: the next order goes to the thread at once, without the 20 ms wait.
    receiver.mode = OK
    thread_puts.clear()
    later = _paid(app)
    join_deliveries()
    assert [item.session_id for item in thread_puts] == [later]
    assert _rows(app)[later][0] == "delivered"
    assert app.extensions["shop"].sink.quick  # its answer came quickly again


def test_a_quick_refusal_is_recorded_as_a_failure_to_retry(quick, thread_puts):
    app, receiver = quick
    receiver.mode = ERROR  # HTTP 500, at once
    _warmed(app)
    thread_puts.clear()
    session_id = _paid(app)
    state, attempts, next_at = _rows(app)[session_id]
    assert (state, attempts) == ("failed", 1)
    assert abs(next_at - (clock.epoch() + retry_schedule.backoff(1))) <= 2
    assert thread_puts == []
    receiver.mode = OK


def test_quick_means_the_last_answer_came_within_quick_seconds(quick):
    app, receiver = quick
    sink = app.extensions["shop"].sink
    assert not sink.quick  # nothing known yet
    _warmed(app)
    receiver.mode, receiver.hang_seconds = HANG, QUICK_SECONDS * 5
    _paid(app)
    join_deliveries()
    assert not sink.quick
    receiver.mode = OK
