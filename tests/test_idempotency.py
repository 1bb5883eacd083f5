"""Idempotency-Key semantics (ACP §6) on every POST surface."""

from __future__ import annotations

import json

import pytest

from shop.idempotency import canonical_json
from tests.conftest import AcpClient, assert_acp, cart, payment


def test_missing_key_is_400(acp):
    headers = acp.headers()
    del headers["Idempotency-Key"]
    response = acp.client.post("/checkout_sessions", json=cart(), headers=headers)
    assert response.status_code == 400
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_key_required"


def test_overlong_key_is_400(acp):
    response = acp.create(key="k" * 256)
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_too_long"


def test_replay_returns_stored_response_with_header(acp):
    first = acp.create(key="same-key")
    second = acp.create(key="same-key")
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json()
    assert "Idempotent-Replayed" not in first.headers


def test_replay_ignores_key_order_and_whitespace(acp):
    body = cart()
    first = acp.create(body, key="canon")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    second = acp.client.post(
        "/checkout_sessions",
        data=reordered,
        content_type="application/json",
        headers=acp.headers("canon"),
    )
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json()["id"] == first.get_json()["id"]


def test_same_key_different_body_is_422(acp):
    acp.create(cart(("widget", 1)), key="k1")
    response = acp.create(cart(("widget", 2)), key="k1")
    assert response.status_code == 422
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_conflict"


def test_keys_are_scoped_by_path(acp):
    created = acp.create(key="shared").get_json()
    response = acp.post(f"/checkout_sessions/{created['id']}", {"coupons": ["TEN"]}, key="shared")
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers


def test_keys_are_scoped_by_api_key(make_app):
    from tests.conftest import AcpClient

    app = make_app(env={"SHOP_API_KEYS": "openai:tok-a,gemini:tok-b"})
    a = AcpClient(app.test_client(), "tok-a")
    b = AcpClient(app.test_client(), "tok-b")
    first = a.create(key="k").get_json()
    second = b.create(key="k").get_json()
    assert first["id"] != second["id"]


def test_in_flight_is_409_with_retry_after(acp, app):
    from shop import clock
    from shop.db import IdempotencyRecord, db
    from shop.idempotency import request_fingerprint

    body = cart()
    with app.app_context():
        db.session.add(
            IdempotencyRecord(
                scope="demo:/checkout_sessions",
                key="busy",
                request_hash=request_fingerprint(body),
                state="in_flight",
                created_at=clock.epoch(),
            )
        )
        db.session.commit()
    response = acp.create(body, key="busy")
    assert response.status_code == 409
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_in_flight"
    assert int(response.headers["Retry-After"]) >= 1


def test_errors_4xx_are_replayed(acp):
    first = acp.create(cart(("nope", 1)), key="bad")
    second = acp.create(cart(("nope", 1)), key="bad")
    assert first.status_code == second.status_code == 400
    assert second.headers["Idempotent-Replayed"] == "true"


def test_5xx_is_not_stored(acp, app, monkeypatch):
    from shop import checkout

    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("database fell over")

    monkeypatch.setattr(checkout, "create_session", boom)
    first = acp.create(key="flaky")
    assert first.status_code == 500
    assert_acp(first.get_json(), "Error")
    monkeypatch.undo()
    second = acp.create(key="flaky")
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers


def test_complete_replay_does_not_charge_again(acp, app):
    created = acp.create(cart(("scarce", 1))).get_json()
    first = acp.complete(created["id"], key="pay-1")
    second = acp.complete(created["id"], key="pay-1")
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.get_json() == second.get_json()
    sink = app.extensions["shop"].sink
    import time

    deadline = time.time() + 5
    while not sink.orders and time.time() < deadline:
        time.sleep(0.02)
    assert len(sink.orders) == 1


def test_a_request_that_missed_anothers_claim_answers_as_a_retry(acp, monkeypatch):
    """Same key, same body, and the look-up ran just before the first request's claim landed:
    the second must not answer (or store) for the first; it gets what a retry gets."""
    from shop import idempotency

    session_id = acp.create().get_json()["id"]
    first = acp.complete(session_id, "tok_pending", key="k-race")
    assert first.get_json()["status"] == "in_progress"
    real_read, missed = idempotency.read, []

    def read_missing_once(stmt, *args):  # the look-up runs before the claim is visible
        if stmt is idempotency._FIND and not missed:
            missed.append(stmt)
            return []
        return real_read(stmt, *args)

    monkeypatch.setattr(idempotency, "read", read_missing_once)
    second = acp.complete(session_id, "tok_pending", key="k-race")
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json() == first.get_json()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}),
        ({"x": "é"}, {"x": "\u00e9"}),
    ],
)
def test_canonical_json_equivalence(a, b):
    assert canonical_json(a) == canonical_json(b)


def test_complete_body_matters_for_conflict(acp):
    created = acp.create().get_json()
    acp.post(f"/checkout_sessions/{created['id']}/complete", payment("tok_chargeDeclined"), key="c")
    path = f"/checkout_sessions/{created['id']}/complete"
    response = acp.post(path, payment("tok_visa"), key="c")
    assert response.status_code == 422


def _sessions(db_path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM checkout_sessions").fetchone()[0]


def test_failed_create_leaves_neither_session_nor_record(acp, app, monkeypatch, shop_files):
    """Claim, session and stored response commit together: a crash in between keeps none."""
    from shop.api import acp as acp_api

    def boom(*args, **kwargs):
        raise RuntimeError("renderer fell over after the session was written")

    monkeypatch.setattr(acp_api, "render_session", boom)
    assert acp.create(key="atomic").status_code == 500
    assert _sessions(shop_files["db"]) == 0
    monkeypatch.undo()
    again = acp.create(key="atomic")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert _sessions(shop_files["db"]) == 1


def test_stored_response_is_committed_with_the_update(acp, app):
    from shop.db import IdempotencyRecord, db

    created = acp.create().get_json()
    updated = acp.post(f"/checkout_sessions/{created['id']}", {"coupons": ["TEN"]}, key="u1")
    with app.app_context():
        record = db.session.execute(db.select(IdempotencyRecord).filter_by(key="u1")).scalar_one()
        assert (record.state, record.status_code) == ("done", 200)
        assert json.loads(record.response_body) == updated.get_json()


def test_racing_requests_with_one_key_make_one_session(shop_files):
    """Twelve identical creates at once on three gunicorn workers: one session, one answer."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.conftest import API_VERSION
    from tests.gunicorn_server import gunicorn

    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "",
    }
    headers = {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": "same-key-everywhere",
    }
    with gunicorn(env, workers=3, threads=4) as url, ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    f"{url}/checkout_sessions", json=cart(), headers=headers, timeout=20
                ),
                range(12),
            )
        )
    statuses = {a.status_code for a in answers}
    assert statuses <= {201, 409}, [a.text for a in answers]
    created = [a.json() for a in answers if a.status_code == 201]
    assert created
    assert len({c["id"] for c in created}) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["code"] == "idempotency_in_flight"
    assert _sessions(shop_files["db"]) == 1


def test_non_ascii_answers_are_utf8_and_replay_byte_identical(shop_files, make_app):
    """Answers carry non-ASCII as UTF-8 (not \\u escapes); a replay is the same bytes."""
    from shop.db import IdempotencyRecord, db

    title, first_name = "Café Widget — 日本製", "Zoë"
    products = json.loads(shop_files["products"].read_text(encoding="utf-8"))
    products[0]["title"] = title
    shop_files["products"].write_text(json.dumps(products), encoding="utf-8")
    app = make_app()
    acp = AcpClient(app.test_client())
    body = cart(buyer={"email": "zoe@example.com", "first_name": first_name, "last_name": "Ōkubo"})

    first = acp.create(body, key="utf8-create")
    assert first.status_code == 201
    assert first.mimetype == "application/json"  # JSON is UTF-8 by definition (RFC 8259 §8.1)
    assert title.encode() in first.data and first_name.encode() in first.data
    session = json.loads(first.data.decode("utf-8"))
    assert session["line_items"][0]["name"] == title
    assert session["buyer"]["first_name"] == first_name

    again = acp.create(body, key="utf8-create")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (again.status_code, again.mimetype) == (201, "application/json")
    assert again.data == first.data

    paid = acp.complete(session["id"], key="utf8-complete")  # stored by the in-flight claim
    assert paid.status_code == 200 and title.encode() in paid.data
    repeat = acp.complete(session["id"], key="utf8-complete")
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.data == paid.data
    with app.app_context():
        stored = db.session.execute(
            db.select(IdempotencyRecord.response_body).filter_by(key="utf8-create")
        ).scalar_one()
    assert stored == first.data.decode("utf-8")
