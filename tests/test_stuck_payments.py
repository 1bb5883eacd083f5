"""Payments that never finish: a worker killed mid-charge, a pending payment never settled.

The crash is real: gunicorn workers are SIGKILLed while the (fake) provider holds their charge.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from shop import checkout, clock
from shop.checkout import retention
from tests.conftest import API_VERSION, AcpClient, cart, payment
from tests.gunicorn_server import gunicorn_process

TOKEN = "agent-token"


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "API-Version": API_VERSION, "Idempotency-Key": key}


def _children(pid: int) -> list[int]:
    """Return the pids whose parent is `pid` (Linux /proc: the gunicorn arbiter's workers)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


@pytest.fixture
def stripe_store(shop_files, fake_psp):
    config = json.loads(shop_files["config"].read_text())
    config["paymentProvider"] = "stripe"
    shop_files["config"].write_text(json.dumps(config))
    return {"SHOP_API_KEYS": f"agent:{TOKEN}", **fake_psp.env("stripe")}


@pytest.fixture
def later(monkeypatch):
    real_now = clock.now

    def move(seconds: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=seconds))

    return move


def _scarce_left(acp: AcpClient, session_id: str) -> int:
    return acp.get(f"/checkout_sessions/{session_id}").get_json()["line_items"][0][
        "available_quantity"
    ]


def test_a_worker_killed_mid_charge_is_recovered(
    shop_files, stripe_store, fake_psp, make_app, later
):
    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        **stripe_store,
    }
    key = str(uuid.uuid4())
    fake_psp.hold = "POST /v1/payment_intents"
    with gunicorn_process(env, workers=2) as (url, proc):
        session_id = requests.post(
            f"{url}/checkout_sessions",
            json=cart(("scarce", 1)),
            headers=_headers(str(uuid.uuid4())),
            timeout=10,
        ).json()["id"]
        answers: list[object] = []

        def pay() -> None:
            try:
                answers.append(
                    requests.post(
                        f"{url}/checkout_sessions/{session_id}/complete",
                        json=payment(),
                        headers=_headers(key),
                        timeout=30,
                    )
                )
            except requests.ConnectionError as exc:
                answers.append(exc)

        paying = threading.Thread(target=pay, daemon=True)
        paying.start()
        assert fake_psp.held.wait(10), "the charge never reached the provider"
        for worker in _children(proc.pid):
            os.kill(worker, signal.SIGKILL)  # the worker dies with the charge in flight
        paying.join(30)
        assert len(answers) == 1 and isinstance(answers[0], requests.ConnectionError)
    fake_psp.hold = None
    fake_psp.resume.set()  # the provider finishes the charge nobody is waiting for

    app = make_app(env=stripe_store)
    acp = AcpClient(app.test_client(), TOKEN)
    stuck = acp.get(f"/checkout_sessions/{session_id}").get_json()
    assert stuck["status"] == "in_progress"
    assert _scarce_left(acp, session_id) == 4  # reserved by the dead worker

    later(checkout.STALLED_CLAIM_SECONDS - 60)
    with app.app_context():
        assert checkout.release_stuck_payments(app.extensions["shop"]) == []  # slow, not dead
    later(checkout.STALLED_CLAIM_SECONDS + 60)
    with app.app_context():
        retention.purge(app.extensions["shop"])
    reopened = acp.get(f"/checkout_sessions/{session_id}").get_json()
    assert reopened["status"] == "ready_for_payment"
    assert reopened["messages"][0]["code"] == "payment_declined"
    assert _scarce_left(acp, session_id) == 5

    # The agent retries with the same card: Stripe replays the charge it did make.
    done = acp.complete(session_id).get_json()
    assert done["status"] == "completed"
    assert (
        len({r.headers["Idempotency-Key"] for r in fake_psp.sent("POST", "/v1/payment_intents")})
        == 1
    )
    assert len(fake_psp.payment_intents) == 1  # charged once
    assert _scarce_left(acp, session_id) == 4


def test_a_payment_never_settled_gives_its_stock_back_after_seven_days(
    make_app, stripe_store, fake_psp, later
):
    app = make_app(env=stripe_store)
    acp = AcpClient(app.test_client(), TOKEN)
    session_id = acp.create(cart(("scarce", 1))).get_json()["id"]
    fake_psp.next_outcomes.append("processing")
    assert acp.complete(session_id, "tok_visa").get_json()["status"] == "in_progress"
    assert _scarce_left(acp, session_id) == 4

    later(2 * 86400)  # long past TTL + grace: a paying session is still never purged
    with app.app_context():
        assert retention.purge(app.extensions["shop"]).sessions == 0
    assert acp.get(f"/checkout_sessions/{session_id}").get_json()["status"] == "in_progress"

    later(checkout.UNSETTLED_PAYMENT_SECONDS + 60)
    with app.app_context():
        assert retention.purge(app.extensions["shop"]).sessions == 1  # reopened, then purged
    assert acp.get(f"/checkout_sessions/{session_id}").status_code == 404
    fresh = acp.create(cart(("scarce", 5))).get_json()
    assert fresh["status"] == "ready_for_payment"  # all five units are back
