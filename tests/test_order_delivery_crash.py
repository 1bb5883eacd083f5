"""Orders and `kill -9`, with real gunicorn workers and a real receiver on loopback.

- A burst of checkouts while workers are SIGKILLed one after another: every paid order still
  arrives, and few arrive twice (a send cut off by the kill may be repeated; a send whose
  2xx was seen is recorded before anything else is sent). The counts are printed.
- Paid orders with the receiver down, the whole server killed, restarted, the receiver back,
  and no request to the store at all: every order arrives, once (the sweeper starts at boot).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import requests

from tests.conftest import API_VERSION, cart, payment
from tests.gunicorn_server import gunicorn_process
from tests.receiver import ORDERS_PATH

BURST_SECONDS = 6.0
KILL_EVERY_SECONDS = 0.5
CLIENTS = 8


def _headers() -> dict[str, str]:
    return {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": str(uuid.uuid4()),
        "Connection": "close",  # a new connection each time, so the kernel spreads them
    }


def _env(shop_files, receiver) -> dict[str, str]:
    config = json.loads(shop_files["config"].read_text())
    config["orderWebhookUrl"] = receiver.url
    shop_files["config"].write_text(json.dumps(config))
    products = json.loads(shop_files["products"].read_text())
    for product in products:
        product["inventory"] = None  # the burst never runs out
    shop_files["products"].write_text(json.dumps(products))
    return {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "",
        "ORDER_WEBHOOK_SECRET": receiver.secret,
        "ORDER_WEBHOOK_TIMEOUT": "",
        "ACP_WEBHOOK_URL": "",
        "ACP_WEBHOOK_SECRET": "",
        "ORDER_SWEEP_SECONDS": "0.2",
    }


def _workers(master: int) -> list[int]:
    try:
        return [
            int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()
        ]
    except OSError:
        return []


def _db(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _pay(url: str) -> None:
    created = requests.post(
        f"{url}/checkout_sessions", json=cart(("widget", 1)), headers=_headers(), timeout=10
    )
    session_id = created.json()["id"]
    requests.post(
        f"{url}/checkout_sessions/{session_id}/complete",
        json=payment("tok_visa"),
        headers=_headers(),
        timeout=10,
    )


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _wait_until_quiet(db: Path, quiet: float = 1.0) -> None:
    """Wait until no delivery row has changed state for `quiet` seconds."""
    count = "SELECT count(*) FROM order_deliveries WHERE state = 'delivered'"
    last, since = _db(db, count), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the hand-offs never settled"
        time.sleep(0.1)
        now = _db(db, count)
        if now != last:
            last, since = now, time.monotonic()


def _orders_seen(receiver) -> tuple[set[str], int]:  # type: ignore[no-untyped-def]
    """(distinct order ids accepted, requests that repeated an accepted order)."""
    sent = [r for r in list(receiver.requests) if r.path == ORDERS_PATH and r.status == 200]
    return {r.json()["order"]["id"] for r in sent}, sum(r.duplicate for r in sent)


def test_kill_9_during_a_burst_loses_no_order_and_repeats_few(shop_files, make_order_receiver):
    order_receiver = make_order_receiver(check_schema=False)  # other tests check the bodies
    with gunicorn_process(_env(shop_files, order_receiver), workers=3) as (url, proc):
        stop = time.monotonic() + BURST_SECONDS
        errors: list[str] = []

        def client() -> None:
            while time.monotonic() < stop:
                try:
                    _pay(url)
                except (requests.RequestException, ValueError, KeyError) as exc:
                    errors.append(type(exc).__name__)  # the worker died under this request

        clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        kills = 0
        while time.monotonic() < stop - KILL_EVERY_SECONDS:
            time.sleep(KILL_EVERY_SECONDS)
            workers = _workers(proc.pid)
            if workers:
                os.kill(random.choice(workers), signal.SIGKILL)
                kills += 1
        for thread in clients:
            thread.join(30)

        paid = {
            f"order_{sid}"
            for (sid,) in _db(
                shop_files["db"], "SELECT id FROM checkout_sessions WHERE status = 'completed'"
            )
        }
        # What the live workers hand off arrives at once; what the killed ones held leased
        # waits out its lease (60 s): once the live ones are done, the test lets that time
        # pass in the database.
        _wait_until_quiet(shop_files["db"])
        expired = _db(
            shop_files["db"],
            "UPDATE order_deliveries SET next_at = 0 WHERE state = 'delivering' RETURNING id",
        )
        _wait(lambda: _orders_seen(order_receiver)[0] >= paid, 60, "every paid order")
        time.sleep(0.5)  # a repeat, if any sweeper sent one, lands by now
        arrived, duplicates = _orders_seen(order_receiver)
        states = _db(shop_files["db"], "SELECT state, count(*) FROM order_deliveries GROUP BY 1")
    print(
        f"\nkill -9 x{kills} during a {BURST_SECONDS:g} s burst: {len(paid)} paid, "
        f"{len(arrived)} delivered, {duplicates} delivered twice, {len(expired)} waited out "
        f"a dead worker's lease; client errors {len(errors)}; rows {states}"
    )
    assert kills >= 5 and len(paid) >= 20
    assert arrived == paid  # every paid order, and no order that was not paid
    assert dict(states) == {"delivered": len(paid)}
    # Only a send in flight when its worker died may be repeated: at most one per kill.
    assert duplicates <= kills
    # Whatever failed its signature was cut short by a kill (the body shorter than announced).
    assert all(
        r.verified or len(r.raw) < int(r.headers["Content-Length"]) for r in order_receiver.requests
    )


def test_orders_go_out_after_a_cold_restart_without_any_request(shop_files, order_receiver):
    env = _env(shop_files, order_receiver)
    order_receiver.down()
    with gunicorn_process(env, workers=2) as (url, proc):
        for _ in range(12):
            _pay(url)
        failed = "SELECT count(*) FROM order_deliveries WHERE state = 'failed'"
        _wait(lambda: _db(shop_files["db"], failed) == [(12,)], 10, "the first tries")
        for pid in [*_workers(proc.pid), proc.pid]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    # Down while the backoff (30 s) passes: the test moves the rows' due time instead.
    _db(shop_files["db"], "UPDATE order_deliveries SET next_at = 0 WHERE state = 'failed'")
    order_receiver.start()
    access_log = shop_files["dir"] / "access.log"
    env["GUNICORN_CMD_ARGS"] = f"--access-logfile {access_log}"
    with gunicorn_process(env, workers=2, ready=False):
        orders = order_receiver.wait_for(12, timeout=20)
        time.sleep(0.5)  # a second copy, if any worker sent one, lands by now
        assert not access_log.exists() or access_log.read_text() == ""  # no request at all
    assert len(orders) == 12
    assert [r.duplicate for r in order_receiver.requests] == [False] * 12
    assert _db(shop_files["db"], "SELECT state, count(*) FROM order_deliveries GROUP BY 1") == [
        ("delivered", 12)
    ]
