"""Concurrency proven with real gunicorn worker processes and real threads."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import API_VERSION, cart, payment
from tests.gunicorn_server import gunicorn


def _headers(key: str | None = None) -> dict[str, str]:
    return {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": key or str(uuid.uuid4()),
    }


@pytest.fixture
def server(shop_files):
    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "",
    }
    with gunicorn(env, workers=3, threads=4) as url:
        yield url


def _stock(url: str, session_id: str) -> int | None:
    body = requests.get(
        f"{url}/checkout_sessions/{session_id}", headers=_headers(), timeout=10
    ).json()
    return body["line_items"][0].get("available_quantity")


def test_forty_racing_completes_sell_exactly_five(server):
    with requests.Session() as http:
        sessions = [
            http.post(
                f"{server}/checkout_sessions",
                json=cart(("scarce", 1)),
                headers=_headers(),
                timeout=10,
            ).json()["id"]
            for _ in range(40)
        ]

    def complete(session_id: str) -> dict:
        response = requests.post(
            f"{server}/checkout_sessions/{session_id}/complete",
            json=payment(),
            headers=_headers(),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(complete, sessions))
    statuses = [r["status"] for r in results]
    assert statuses.count("completed") == 5
    losers = [r for r in results if r["status"] != "completed"]
    assert len(losers) == 35
    assert all(r["messages"][0]["code"] == "out_of_stock" for r in losers)
    assert _stock(server, sessions[0]) == 0


@pytest.fixture
def stripe_server(shop_files, fake_psp):
    """The store on Stripe (the real library, pointed at the fake provider on loopback)."""
    config = json.loads(shop_files["config"].read_text())
    config["paymentProvider"] = "stripe"
    shop_files["config"].write_text(json.dumps(config))
    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "agent:tok",
        **fake_psp.env("stripe"),
    }
    with gunicorn(env, workers=3, threads=4) as url:
        yield url


def test_eight_identical_completes_charge_once(stripe_server, fake_psp):
    headers = {**_headers(), "Authorization": "Bearer tok"}
    session_id = requests.post(
        f"{stripe_server}/checkout_sessions", json=cart(("scarce", 1)), headers=headers, timeout=10
    ).json()["id"]
    key = str(uuid.uuid4())

    def complete(_: int) -> requests.Response:
        return requests.post(
            f"{stripe_server}/checkout_sessions/{session_id}/complete",
            json=payment(),
            headers={**headers, "Idempotency-Key": key},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(complete, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 409}
    done = [r.json() for r in responses if r.status_code == 200]
    statuses = [(r.status_code, r.json().get("status")) for r in responses]
    assert done and all(b["status"] == "completed" for b in done), statuses
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == len(done) - 1
    assert all(r.headers["Retry-After"] for r in responses if r.status_code == 409)
    # Charged once: Stripe saw exactly one PaymentIntent for this session.
    charges = fake_psp.sent("POST", "/v1/payment_intents")
    assert len(charges) == 1
    assert charges[0].body["metadata"]["checkout_session_id"] == session_id
    got = requests.get(
        f"{stripe_server}/checkout_sessions/{session_id}", headers=headers, timeout=10
    ).json()
    assert got["line_items"][0].get("available_quantity") == 4  # one unit reserved, once
