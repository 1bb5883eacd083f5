"""The store on a real PostgreSQL server: checkout, idempotency, stock races, order hand-off.

A focused set, not the whole suite again: one flow through every step in process, the
idempotency answers, a stock race between threads, and two gunicorn instances on two ports
sharing one database, as a merchant who outgrew one machine runs them (docs/deploy.md): no
oversell, no double charge, every order delivered once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests

from tests.conftest import ADDRESS_CA, API_VERSION, AcpClient, cart, payment
from tests.gunicorn_server import gunicorn
from tests.receiver import ORDERS_PATH


@pytest.fixture
def pg_app(make_app, postgres):
    return make_app(env={"SHOP_DATABASE_URL": postgres.new_database()})


def test_the_store_runs_on_postgresql(pg_app):
    from shop.storage.models import db

    with pg_app.app_context():
        assert db.engine.dialect.name == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
    health = pg_app.test_client().get("/healthz?strict=1")
    database = [r for r in health.get_json().get("reasons", []) if r["check"] == "database"]
    assert not database, database


def test_checkout_and_idempotency_on_postgresql(pg_app):
    sink = pg_app.extensions["shop"].sink
    acp = AcpClient(pg_app.test_client())
    key = str(uuid.uuid4())
    created = acp.create(cart(("widget", 2)), key=key)
    assert created.status_code == 201
    session_id = created.get_json()["id"]
    replay = acp.create(cart(("widget", 2)), key=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == created.get_json()
    assert acp.create(cart(("widget", 3)), key=key).status_code == 422  # same key, other body
    updated = acp.post(
        f"/checkout_sessions/{session_id}",
        {"fulfillment_details": {"name": "Jane Doe", "address": ADDRESS_CA}},
    )
    assert updated.status_code == 200
    assert any(t["type"] == "tax" for t in updated.get_json()["totals"])  # CA is in nexus
    complete_key = str(uuid.uuid4())
    done = acp.complete(session_id, key=complete_key)
    assert done.get_json()["status"] == "completed"
    again = acp.complete(session_id, key=complete_key)
    assert again.headers["Idempotent-Replayed"] == "true"
    other_key = acp.complete(session_id)  # a new key on a paid session: never a second charge
    assert other_key.get_json()["status"] == "completed"
    from tests.conftest import join_deliveries

    join_deliveries()
    assert [o["order"]["id"] for o in sink.orders] == [done.get_json()["order"]["id"]]


def test_threads_racing_for_the_last_units_on_postgresql(pg_app):
    acp = AcpClient(pg_app.test_client())
    sessions = [acp.create(cart(("scarce", 1))).get_json()["id"] for _ in range(16)]
    barrier = threading.Barrier(len(sessions))

    def complete(session_id: str) -> str:
        client = AcpClient(pg_app.test_client())
        barrier.wait(10)
        return client.complete(session_id).get_json()["status"]

    with ThreadPoolExecutor(len(sessions)) as pool:
        statuses = list(pool.map(complete, sessions))
    assert statuses.count("completed") == 5  # scarce has 5
    got = acp.get(f"/checkout_sessions/{sessions[0]}").get_json()
    assert got["line_items"][0].get("available_quantity") == 0


def _headers(token: str, key: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "API-Version": API_VERSION,
        "Idempotency-Key": key or str(uuid.uuid4()),
    }


def test_two_servers_sharing_one_postgresql_database(
    postgres, shop_files, fake_psp, order_receiver
):
    """Two gunicorn instances (two ports, two workers each) on one database, racing."""
    config = json.loads(shop_files["config"].read_text())
    config["paymentProvider"] = "stripe"
    config["orderWebhookUrl"] = order_receiver.url
    shop_files["config"].write_text(json.dumps(config))
    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": postgres.new_database(),
        "SHOP_API_KEYS": "agent:tok",
        "ORDER_WEBHOOK_SECRET": order_receiver.secret,
        "ORDER_SWEEP_SECONDS": "0.2",  # both instances' sweepers race for every due row
        **fake_psp.env("stripe"),
    }
    with ExitStack() as stack:
        servers = [stack.enter_context(gunicorn(env, workers=2, threads=2)) for _ in range(2)]
        assert servers[0] != servers[1]

        # One Idempotency-Key sent to both servers at once: one session.
        same = _headers("tok", "one-key-two-servers")
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda n: requests.post(
                        f"{servers[n % 2]}/checkout_sessions",
                        json=cart(("widget", 1)),
                        headers=same,
                        timeout=30,
                    ),
                    range(8),
                )
            )
        assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
        made = {a.json()["id"] for a in answers if a.status_code == 201}
        assert len(made) == 1

        # Twenty buyers for five units, half on each server: exactly five sold.
        sessions = [
            requests.post(
                f"{servers[n % 2]}/checkout_sessions",
                json=cart(("scarce", 1)),
                headers=_headers("tok"),
                timeout=30,
            ).json()["id"]
            for n in range(20)
        ]

        def complete(n: int) -> dict:
            answer = requests.post(
                f"{servers[n % 2]}/checkout_sessions/{sessions[n]}/complete",
                json=payment(),
                headers=_headers("tok"),
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(complete, range(20)))
        sold = [r for r in results if r["status"] == "completed"]
        assert len(sold) == 5
        assert all(r["messages"][0]["code"] == "out_of_stock" for r in results if r not in sold)

        # Eight identical completes of one session, split over both servers: one charge.
        paying = made.pop()
        key = str(uuid.uuid4())
        with ThreadPoolExecutor(8) as pool:
            same_key = list(
                pool.map(
                    lambda n: requests.post(
                        f"{servers[n % 2]}/checkout_sessions/{paying}/complete",
                        json=payment(),
                        headers=_headers("tok", key),
                        timeout=60,
                    ),
                    range(8),
                )
            )
        assert {a.status_code for a in same_key} <= {200, 409}
        assert any(a.status_code == 200 for a in same_key)
        charges = fake_psp.sent("POST", "/v1/payment_intents")
        per_session: dict[str, int] = {}
        for charge in charges:
            session_id = charge.body["metadata"]["checkout_session_id"]
            per_session[session_id] = per_session.get(session_id, 0) + 1
        assert per_session.get(paying) == 1
        assert all(count == 1 for count in per_session.values()), per_session

        # Every order delivered once, though four sweepers on two servers race for them.
        order_receiver.wait_for(6, timeout=30)
        time.sleep(1.0)  # a second send would arrive within a few sweeps
        stock = (
            requests.get(
                f"{servers[1]}/checkout_sessions/{sessions[0]}", headers=_headers("tok"), timeout=30
            )
            .json()["line_items"][0]
            .get("available_quantity")
        )
    sent = [r for r in order_receiver.requests if r.path == ORDERS_PATH]
    ids = [json.loads(r.raw)["order"]["id"] for r in sent]
    assert sorted(ids) == sorted({r["order"]["id"] for r in sold} | {f"order_{paying}"})
    assert len(ids) == len(set(ids)) == 6  # no order sent twice
    assert stock == 0
