"""The hand-off's cheap path keeps its promises: kept-alive HTTP that recovers from a closed
connection, the stored bytes sent as they are, leases honoured, a 2xx recorded at once."""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shop import clock, orders
from shop.orders import retry_schedule
from shop.orders.sinks import WebhookSink
from shop.orders.transport import DeliveryError, Transport
from tests.conftest import FROM_CONFIG, AcpClient, cart, join_deliveries
from tests.receiver import expected_signature
from tests.test_orders_sink import physical_order


@pytest.fixture
def later(monkeypatch):
    real_now = clock.now

    def move(seconds: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=seconds))

    return move


# --- the transport ---------------------------------------------------------------------------


def test_orders_to_one_destination_share_one_kept_alive_connection(order_receiver):
    sink = WebhookSink(order_receiver.url, order_receiver.secret)
    for number in range(5):
        order = physical_order()
        order["order"]["id"] = f"order_cs_keep{number}"
        sink.deliver(order)
    assert len(order_receiver.deliveries) == 5
    assert order_receiver.connections == 1


def test_a_kept_alive_connection_the_receiver_closed_is_replaced(order_receiver):
    sink = WebhookSink(order_receiver.url, order_receiver.secret, timeout=2)
    sink.deliver(physical_order())
    order_receiver.stop()  # closes its end of the idle connection
    order_receiver.start()  # back on the same port
    second = physical_order()
    second["order"]["id"] = "order_cs_after_restart"
    sink.deliver(second)  # no DeliveryError: the dead connection is noticed and replaced
    assert [o["order"]["id"] for o in order_receiver.orders] == [
        "order_cs_phys",
        "order_cs_after_restart",
    ]
    assert order_receiver.connections == 2


def test_the_stored_text_is_sent_byte_for_byte_and_signed(order_receiver):
    # A row written before orjson holds spaced JSON: it goes as stored, not re-encoded.
    text = json.dumps({**physical_order(), "event": "order.flagged", "flag": {"reason": "x"}})
    assert ": " in text
    sink = WebhookSink(order_receiver.url, order_receiver.secret)
    sink.send_stored(text, "order_cs_phys", "order.flagged")
    [received] = order_receiver.requests
    assert received.raw == text.encode() and received.verified
    assert received.headers["Signature"] == expected_signature(order_receiver.secret, text.encode())
    assert received.headers["Idempotency-Key"] == "order_cs_phys:order.flagged"


def test_credentials_in_the_url_are_sent_as_basic_auth(order_receiver):
    url = order_receiver.url.replace("http://", "http://shop:p%40ss@")
    WebhookSink(url, order_receiver.secret).deliver(physical_order())
    [received] = order_receiver.requests
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"shop:p@ss").decode()


def test_a_proxy_named_in_the_environment_is_used_unless_no_proxy_says_not(
    order_receiver, make_order_receiver, monkeypatch
):
    proxy = make_order_receiver()
    monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(DeliveryError):  # the "proxy" answers 404 to a proxied request
        Transport(order_receiver.url, 2).post(b"{}", {"Content-Type": "application/json"})
    assert [r.path for r in proxy.requests] == [order_receiver.url]  # absolute-form: proxied
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    WebhookSink(order_receiver.url, order_receiver.secret).deliver(physical_order())
    assert len(order_receiver.deliveries) == 1 and len(proxy.requests) == 1


# --- leases and outcomes -------------------------------------------------------------------


@pytest.fixture
def store(make_app, order_receiver, shop_files):
    app = make_app(
        config={"orderWebhookUrl": order_receiver.url},
        env={"ORDER_WEBHOOK_SECRET": order_receiver.secret},
        sink=FROM_CONFIG,
    )
    app.config["db_path"] = shop_files["db"]
    return app


def _paid_while_failing(app: Any, receiver: Any, count: int) -> list[str]:
    """Pay `count` sessions while the receiver fails, so each row is `failed` after one try."""
    receiver.mode = "error"
    acp = AcpClient(app.test_client())
    sessions = []
    for _ in range(count):
        session_id = acp.create(cart(("ebook-single", 1), address=None)).get_json()["id"]
        assert acp.complete(session_id).get_json()["status"] == "completed"
        sessions.append(session_id)
    join_deliveries()
    receiver.mode = "ok"
    return sessions


def _states(app: Any) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(app.config["db_path"])
    try:
        rows = conn.execute("SELECT session_id, state, next_at FROM order_deliveries").fetchall()
    finally:
        conn.close()
    return {session: (state, next_at) for session, state, next_at in rows}


def _due_and_claimed(app: Any) -> list[Any]:
    with app.app_context():
        return orders.claim(app.extensions["shop"], orders.due())


def test_each_2xx_is_recorded_before_the_next_send(store, order_receiver, later):
    _paid_while_failing(store, order_receiver, 3)
    later(retry_schedule.backoff(1) + 1)
    sink = store.extensions["shop"].sink
    delivered_before: list[int] = []
    real_send = sink.send_stored

    def probe(text: str, order_id: str, event: str) -> None:
        states = [state for state, _ in _states(store).values()]
        delivered_before.append(states.count("delivered"))
        real_send(text, order_id, event)

    sink.send_stored = probe
    with store.app_context():
        assert orders.sweep(store.extensions["shop"]) == 3
    # Each order's 2xx was in the database before the next order went (and no transaction
    # was open during a send: the probe read the database from another connection).
    assert delivered_before == [0, 1, 2]
    assert {state for state, _ in _states(store).values()} == {"delivered"}


def test_a_message_whose_lease_another_worker_took_is_left_to_it(store, order_receiver, later):
    [session] = _paid_while_failing(store, order_receiver, 1)
    later(retry_schedule.backoff(1) + 1)
    [message] = _due_and_claimed(store)
    assert message.attempts == 2
    # The lease ran out and another worker took the row (a new lease, a later next_at).
    conn = sqlite3.connect(store.config["db_path"])
    with conn:
        conn.execute("UPDATE order_deliveries SET next_at = next_at + 100")
    conn.close()
    stale = replace(message, lease=clock.epoch() + 1)  # too short for a send: renewed first
    with store.app_context():
        assert orders.send_all(store.extensions["shop"], [stale]) == 0
    assert len(order_receiver.requests) == 1  # only the first, failed try
    assert _states(store)[session] == ("delivering", message.lease + 100)  # theirs, untouched


def test_a_lease_too_short_for_the_send_is_renewed_first(store, order_receiver, later):
    [session] = _paid_while_failing(store, order_receiver, 1)
    later(retry_schedule.backoff(1) + 1)
    [message] = _due_and_claimed(store)
    assert message.lease - clock.epoch() == retry_schedule.lease_seconds(10)
    conn = sqlite3.connect(store.config["db_path"])
    with conn:  # held, but about to run out
        conn.execute("UPDATE order_deliveries SET next_at = ?", (clock.epoch() + 1,))
    conn.close()
    with store.app_context():
        assert (
            orders.send_all(store.extensions["shop"], [replace(message, lease=clock.epoch() + 1)])
            == 1
        )
    assert _states(store)[session][0] == "delivered"


def test_a_failure_is_recorded_only_by_the_lease_holder(store, order_receiver, later):
    [session] = _paid_while_failing(store, order_receiver, 1)
    later(retry_schedule.backoff(1) + 1)
    [message] = _due_and_claimed(store)
    order_receiver.mode = "error"
    real_send = store.extensions["shop"].sink.send_stored

    def taken_over_meanwhile(text: str, order_id: str, event: str) -> None:
        conn = sqlite3.connect(store.config["db_path"])
        with conn:  # another worker recorded it delivered while this send failed
            conn.execute("UPDATE order_deliveries SET state = 'delivered'")
        conn.close()
        real_send(text, order_id, event)

    store.extensions["shop"].sink.send_stored = taken_over_meanwhile
    with store.app_context():
        assert orders.send_all(store.extensions["shop"], [message]) == 0
    assert _states(store)[session][0] == "delivered"
