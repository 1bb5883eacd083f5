"""/healthz (ok, or degraded with reasons), who may read /metrics, and the /status page's
authentication and CSRF over plain HTTP (the browser test is in test_watching.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shop import clock, metrics
from shop.api.ops import HEALTH_CHECKS
from shop.storage.models import db
from tests.conftest import AcpClient

ADMIN = "admin-token-for-tests-0123456789"


class FailingSink:
    def deliver(self, order):
        raise RuntimeError("the receiver is down")


def _pay(acp: AcpClient, token: str = "tok_visa") -> str:
    session_id = acp.create().get_json()["id"]
    acp.complete(session_id, token)
    return session_id


def test_healthz_is_ok_on_a_healthy_store(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_degrades_when_an_order_waits_past_ten_minutes(make_app, monkeypatch):
    app = make_app(sink=FailingSink())
    client = app.test_client()
    session_id = _pay(AcpClient(client))
    from tests.conftest import join_deliveries

    join_deliveries()
    assert client.get("/healthz").get_json() == {"status": "ok"}  # failed, but only just
    later = clock.now() + timedelta(minutes=11)
    monkeypatch.setattr(clock, "now", lambda: later)
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert [r["check"] for r in body["reasons"]] == ["orders"]
    assert "orders failed" in body["reasons"][0]["reason"]
    assert session_id not in str(body) and "jane@example.com" not in str(body)
    assert client.get("/healthz?strict=1").status_code == 503
    assert client.get("/healthz").status_code == 200  # a load balancer keeps the store


def test_healthz_degrades_while_the_provider_fails(client):
    gauge = metrics.PROVIDER_LAST_ERROR.labels(provider="test")
    answered = metrics.PROVIDER_LAST_ANSWER.labels(provider="test")
    try:
        answered.set(clock.epoch() - 60)
        gauge.set(clock.epoch())
        body = client.get("/healthz").get_json()
        assert body["status"] == "degraded"
        assert [r["check"] for r in body["reasons"]] == ["payment_provider"]
        metrics.PROVIDER_LAST_ANSWER.labels(provider="test").set(clock.epoch() + 1)
        assert client.get("/healthz").get_json() == {"status": "ok"}  # answered since
    finally:
        gauge.set(0)


def test_healthz_degrades_when_the_database_refuses_a_write(app, client, monkeypatch):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    later = clock.now() + timedelta(seconds=31)  # past the last probe's answer
    monkeypatch.setattr(clock, "now", lambda: later)
    with app.app_context(), db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE hourly_counts")
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert body["reasons"][0]["check"] == "database"
    assert "test write failed" in body["reasons"][0]["reason"]


def test_a_plugged_in_check_reports_its_reason(app, client):
    app.extensions.setdefault(HEALTH_CHECKS, {})["storage"] = lambda: "disk 98% full"
    body = client.get("/healthz").get_json()
    assert body == {
        "status": "degraded",
        "reasons": [{"check": "storage", "reason": "disk 98% full"}],
    }


# ---------------------------------------------------------------- /metrics


def test_metrics_answer_loopback(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "shop_complete_attempts_total" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "environ",
    [
        {"REMOTE_ADDR": "203.0.113.9"},
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},
    ],
    ids=["remote", "through-a-proxy"],
)
def test_metrics_refuse_anyone_else(make_app, environ):
    client = make_app(env={"SHOP_METRICS_TOKEN": "scrape-token-0123456789"}).test_client()
    assert client.get("/metrics", environ_base=environ).status_code == 403
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/metrics", environ_base=environ, headers=wrong).status_code == 403
    right = {"Authorization": "Bearer scrape-token-0123456789"}
    assert client.get("/metrics", environ_base=environ, headers=right).status_code == 200


def test_metrics_without_a_token_answer_loopback_only(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 403


# ---------------------------------------------------------------- /status


def test_status_refuses_to_serve_without_an_admin_token(client):
    response = client.get("/status")
    assert response.status_code == 503
    assert "SHOP_ADMIN_TOKEN" in response.get_data(as_text=True)
    assert client.post("/status/login", data={"token": ""}).status_code == 503


def test_status_refuses_a_short_admin_token(make_app):
    client = make_app(env={"SHOP_ADMIN_TOKEN": "hunter2"}).test_client()
    assert client.get("/status").status_code == 503
    assert "at least 16 characters" in client.get("/status").get_data(as_text=True)
    assert client.post("/status/login", data={"token": "hunter2"}).status_code == 503


@pytest.fixture
def admin(make_app):
    return make_app(env={"SHOP_ADMIN_TOKEN": ADMIN}, sink=FailingSink())


def test_status_asks_for_the_token_and_refuses_a_wrong_one(admin):
    client = admin.test_client()
    page = client.get("/status")
    assert page.status_code == 401
    assert 'name="token"' in page.get_data(as_text=True)
    wrong = client.post("/status/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "shop_status" not in wrong.headers.get("Set-Cookie", "")
    assert client.get("/status", headers={"Authorization": "Bearer guess"}).status_code == 401


def test_status_signs_in_with_a_strict_cookie_and_serves_no_secret(admin):
    client = admin.test_client()
    login = client.post("/status/login", data={"token": ADMIN})
    assert login.status_code == 303
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/status" in cookie
    assert ADMIN not in cookie
    page = client.get("/status")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert ADMIN not in text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "<svg" in text and "<script" not in text
    bearer = admin.test_client().get("/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 200


def test_replay_needs_the_pages_csrf_token(admin):
    client = admin.test_client()
    session_id = _pay(AcpClient(client))
    from tests.conftest import join_deliveries

    join_deliveries()
    client.post("/status/login", data={"token": ADMIN})
    page = client.get("/status").get_data(as_text=True)
    assert f'value="{session_id}"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]
    forged = client.post("/status/replay", data={"session_id": session_id})
    assert forged.status_code == 403
    stale = client.post("/status/replay", data={"session_id": session_id, "csrf": "0" * 64})
    assert stale.status_code == 403
    done = client.post("/status/replay", data={"session_id": session_id, "csrf": csrf})
    assert done.status_code == 200
    assert f"Replayed {session_id}" in done.get_data(as_text=True)
    # A signed-out browser (no cookie, no bearer) gets the sign-in form, not a replay.
    other = admin.test_client().post("/status/replay", data={"session_id": session_id})
    assert other.status_code == 401
