"""Idempotency-Key semantics (ACP §6) on every POST surface."""

from __future__ import annotations

import json

import pytest

from shop.idempotency import canonical_json
from tests.conftest import assert_acp, cart, payment


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
    second = acp.client.post("/checkout_sessions", data=reordered,
                             content_type="application/json", headers=acp.headers("canon"))
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
        db.session.add(IdempotencyRecord(scope="demo:/checkout_sessions", key="busy",
                                         request_hash=request_fingerprint(body),
                                         state="in_flight", created_at=clock.epoch()))
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


@pytest.mark.parametrize(("a", "b"), [
    ({"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}),
    ({"x": "é"}, {"x": "\u00e9"}),
])
def test_canonical_json_equivalence(a, b):
    assert canonical_json(a) == canonical_json(b)


def test_complete_body_matters_for_conflict(acp):
    created = acp.create().get_json()
    acp.post(f"/checkout_sessions/{created['id']}/complete", payment("tok_chargeDeclined"), key="c")
    path = f"/checkout_sessions/{created['id']}/complete"
    response = acp.post(path, payment("tok_visa"), key="c")
    assert response.status_code == 422
