"""Exactly one order per paid session, proven with real gunicorn workers racing to confirm it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import API_VERSION, cart, payment
from tests.gunicorn_server import gunicorn

WEBHOOKS = ["evt_a", "evt_a", "evt_b", "evt_b", "evt_c", "evt_d"]  # repeats and distinct ids
QUIET_SECONDS = 2.0  # how long we watch for a second order after the first


def _headers(key: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer demo", "API-Version": API_VERSION,
            "Idempotency-Key": key or str(uuid.uuid4())}


@pytest.fixture
def server(shop_files, order_receiver):
    config = json.loads(shop_files["config"].read_text())
    config["orderWebhookUrl"] = order_receiver.url
    shop_files["config"].write_text(json.dumps(config))
    env = {"SHOP_CONFIG": str(shop_files["config"]), "SHOP_PRODUCTS": str(shop_files["products"]),
           "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}", "SHOP_API_KEYS": "",
           "ORDER_WEBHOOK_SECRET": order_receiver.secret, "ORDER_WEBHOOK_TIMEOUT": "",
           "ACP_WEBHOOK_URL": "", "ACP_WEBHOOK_SECRET": ""}
    with gunicorn(env, workers=3, threads=2) as url:
        yield url


def test_racing_confirmations_send_one_order(server, order_receiver, shop_files):
    created = requests.post(f"{server}/checkout_sessions", json=cart(("widget", 1)),
                            headers=_headers(), timeout=10).json()
    session_id, key = created["id"], str(uuid.uuid4())
    complete_url = f"{server}/checkout_sessions/{session_id}/complete"
    pending = requests.post(complete_url, json=payment("tok_pending"), headers=_headers(key),
                            timeout=10).json()
    assert pending["status"] == "in_progress"

    start = threading.Barrier(len(WEBHOOKS) + 2)

    def webhook(event_id: str) -> str:
        body = {"id": event_id, "type": "payment.succeeded", "session_id": session_id,
                "reference": "pay_race"}
        start.wait()
        # A new connection each time, so the kernel spreads them over the workers.
        response = requests.post(f"{server}/webhooks/test", json=body, timeout=30,
                                 headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        return response.json()["outcome"]

    def retried_complete(same_key: bool) -> str:
        start.wait()
        response = requests.post(complete_url, json=payment("tok_pending"), timeout=30,
                                 headers={**_headers(key if same_key else None),
                                          "Connection": "close"})
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

    got = requests.get(f"{server}/checkout_sessions/{session_id}", headers=_headers(),
                       timeout=10).json()
    assert got["status"] == "completed"
    assert [o["order"]["id"] for o in order_receiver.wait_for(1, timeout=10)] == [
        got["order"]["id"]]
    time.sleep(QUIET_SECONDS)  # a second hand-off, if any, would land by now
    orders = [r for r in order_receiver.requests if r.path == "/hooks/orders"]
    assert len(orders) == 1, [r.json()["event"] for r in orders]
    assert orders[0].verified and orders[0].json()["event"] == "order.created"
    with sqlite3.connect(shop_files["db"]) as conn:
        rows = conn.execute("SELECT event, state, attempts FROM order_deliveries "
                            "WHERE session_id = ?", (session_id,)).fetchall()
    conn.close()
    assert rows == [("order.created", "delivered", 1)]
