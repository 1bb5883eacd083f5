"""Exactly one order per paid session, proven with real gunicorn workers racing to confirm it.

Gunicorn writes an access log with each request's worker pid (`GUNICORN_CMD_ARGS`), so a test
can show its requests really landed on different processes; every worker's sweeper polls every
0.1 s, so the workers also race each other for the same due delivery rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import API_VERSION, cart, payment
from tests.gunicorn_server import gunicorn, store_env
from tests.offline_events import offline_signature

WEBHOOKS = ["evt_a", "evt_a", "evt_b", "evt_b", "evt_c", "evt_d"]  # repeats and distinct ids
QUIET_SECONDS = 2.0  # how long we watch for a second order after the first
WORKERS = 3


def _headers(key: str | None = None) -> dict[str, str]:
    return {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": key or str(uuid.uuid4()),
    }


@pytest.fixture
def access_log(shop_files) -> Path:
    return shop_files["dir"] / "access.log"


@pytest.fixture
def server(shop_files, order_receiver, access_log):
    env = store_env(
        shop_files,
        order_receiver,
        ORDER_SWEEP_SECONDS="0.1",
        # %(p)s is the worker's pid: which process answered each request.
        GUNICORN_CMD_ARGS=f"--access-logfile {access_log} "
        "--access-logformat '%(p)s %(m)s %(U)s %(s)s'",
    )
    # threads=1: gunicorn's default sync worker, one request at a time per process, so
    # concurrent requests spread over the processes (a gthread worker may accept them all).
    with gunicorn(env, workers=WORKERS, threads=1) as url:
        _reach_every_worker(url, access_log)
        yield url


def _reach_every_worker(url: str, access_log: Path) -> None:
    """Wait until every worker has booted and answered (and so started its sweeper)."""
    for _ in range(50):
        with ThreadPoolExecutor(max_workers=12) as pool:
            list(
                pool.map(
                    lambda _: requests.get(
                        f"{url}/healthz", timeout=10, headers={"Connection": "close"}
                    ),
                    range(12),
                )
            )
        if len(_workers(access_log, "/healthz")) == WORKERS:
            return
        time.sleep(0.1)
    raise AssertionError(f"not every one of {WORKERS} gunicorn workers answered /healthz")


def _workers(access_log: Path, path: str) -> set[str]:
    """Return the pids of the workers that answered requests to `path`."""
    found = set()
    for line in access_log.read_text().splitlines():
        pid, _method, url, _status = line.split(" ", 3)
        if url == path:
            found.add(pid)
    return found


def _deliveries(db_path: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT session_id, event, state, attempts FROM order_deliveries ORDER BY id"
        ).fetchall()
    conn.close()
    return rows


def _wait(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_racing_confirmations_send_one_order(server, order_receiver, shop_files, access_log):
    created = requests.post(
        f"{server}/checkout_sessions", json=cart(("widget", 1)), headers=_headers(), timeout=10
    ).json()
    session_id, key = created["id"], str(uuid.uuid4())
    complete_url = f"{server}/checkout_sessions/{session_id}/complete"
    pending = requests.post(
        complete_url, json=payment("tok_pending"), headers=_headers(key), timeout=10
    ).json()
    assert pending["status"] == "in_progress"

    start = threading.Barrier(len(WEBHOOKS) + 2)

    def webhook(event_id: str) -> str:
        body = {
            "id": event_id,
            "type": "payment.succeeded",
            "session_id": session_id,
            "reference": "pay_race",
        }
        start.wait()
        # A new connection each time, so the kernel spreads them over the workers.
        raw = json.dumps(body).encode()
        response = requests.post(
            f"{server}/webhooks/test",
            data=raw,
            timeout=30,
            headers={
                "Connection": "close",
                "Content-Type": "application/json",
                "X-Test-Signature": offline_signature(raw),
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["outcome"]

    def retried_complete(same_key: bool) -> str:
        start.wait()
        response = requests.post(
            complete_url,
            json=payment("tok_pending"),
            timeout=30,
            headers={**_headers(key if same_key else None), "Connection": "close"},
        )
        assert response.status_code in (200, 409), response.text
        return response.json().get("status", "conflict")

    with ThreadPoolExecutor(max_workers=len(WEBHOOKS) + 2) as pool:
        hooks = [pool.submit(webhook, event_id) for event_id in WEBHOOKS]
        retries = [pool.submit(retried_complete, same) for same in (True, False)]
        outcomes = [f.result() for f in hooks]
        statuses = [f.result() for f in retries]
    print("webhook outcomes:", outcomes, "retried /complete:", statuses)
    assert set(outcomes) <= {"completed", "already_completed", "duplicate"}, outcomes
    assert set(statuses) <= {"in_progress", "completed", "conflict"}, statuses
    assert outcomes.count("completed") <= 1, outcomes

    got = requests.get(
        f"{server}/checkout_sessions/{session_id}", headers=_headers(), timeout=10
    ).json()
    assert got["status"] == "completed"
    assert [o["order"]["id"] for o in order_receiver.wait_for(1, timeout=10)] == [
        got["order"]["id"]
    ]
    time.sleep(QUIET_SECONDS)  # a second hand-off, if any, would land by now
    orders = [r for r in order_receiver.requests if r.path == "/hooks/orders"]
    assert len(orders) == 1, [r.json()["event"] for r in orders]
    assert orders[0].verified and orders[0].json()["event"] == "order.created"
    with sqlite3.connect(shop_files["db"]) as conn:
        rows = conn.execute(
            "SELECT event, state, attempts FROM order_deliveries WHERE session_id = ?",
            (session_id,),
        ).fetchall()
    conn.close()
    assert rows == [("order.created", "delivered", 1)]
    # The racing requests were really spread over the worker processes.
    assert (
        len(
            _workers(access_log, "/webhooks/test")
            | _workers(access_log, complete_url.removeprefix(server))
        )
        >= 2
    )


def _paid_session(server: str) -> str:
    created = requests.post(
        f"{server}/checkout_sessions",
        json=cart(("widget", 1)),
        headers={**_headers(), "Connection": "close"},
        timeout=10,
    )
    done = requests.post(
        f"{server}/checkout_sessions/{created.json()['id']}/complete",
        json=payment("tok_visa"),
        timeout=10,
        headers={**_headers(), "Connection": "close"},
    )
    assert done.json()["status"] == "completed", done.text
    return created.json()["id"]


def test_workers_racing_for_due_retries_send_each_order_once(
    server, order_receiver, shop_files, access_log
):
    order_receiver.mode = "error"
    with ThreadPoolExecutor(max_workers=6) as pool:
        sessions = list(pool.map(lambda _: _paid_session(server), range(6)))
    assert len(_workers(access_log, "/healthz")) == WORKERS  # each has a sweeper running
    _wait(lambda: [r[2] for r in _deliveries(shop_files["db"])] == ["failed"] * 6)
    # The hand-off thread and three sweepers all saw each new row: one try each, no more.
    assert [r[3] for r in _deliveries(shop_files["db"])] == [1] * 6
    assert len(order_receiver.requests) == 6

    order_receiver.mode = "ok"
    with sqlite3.connect(shop_files["db"]) as conn:  # the backoff has passed, for every row
        conn.execute("UPDATE order_deliveries SET next_at = 0")
    conn.close()
    _wait(lambda: [r[2] for r in _deliveries(shop_files["db"])] == ["delivered"] * 6)
    time.sleep(QUIET_SECONDS)  # a second send, if any worker made one, would land by now
    assert [r[3] for r in _deliveries(shop_files["db"])] == [2] * 6
    assert len(order_receiver.requests) == 12
    assert sorted(o["order"]["checkout_session_id"] for o in order_receiver.orders) == sorted(
        sessions
    )
    assert all(d.verified for d in order_receiver.deliveries)
