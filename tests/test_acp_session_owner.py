"""A checkout session belongs to the API key that created it: another key gets 404."""

from __future__ import annotations

import pytest

from tests.conftest import AcpClient, assert_acp, cart, join_deliveries, payment

KEYS = "openai:tok-a,gemini:tok-b"


@pytest.fixture
def two_platforms(make_app):
    app = make_app(env={"SHOP_API_KEYS": KEYS})
    client = app.test_client()
    return app, AcpClient(client, "tok-a"), AcpClient(client, "tok-b")


def test_another_key_cannot_read_update_complete_or_cancel(two_platforms) -> None:
    app, a, b = two_platforms
    session = a.create(cart(("scarce", 1))).get_json()
    path = f"/checkout_sessions/{session['id']}"

    answers = [
        b.get(path),
        b.post(path, {"buyer": {"email": "mallory@example.com"}}),
        b.post(f"{path}/complete", payment()),
        b.post(f"{path}/cancel", {}),
    ]
    for response in answers:
        assert response.status_code == 404
        assert_acp(response.get_json(), "Error")
        assert response.get_json()["code"] == "session_not_found"
        assert "jane@example.com" not in response.get_data(as_text=True)

    mine = a.get(path).get_json()
    assert mine["status"] == "ready_for_payment"
    assert mine["buyer"]["email"] == "jane@example.com"
    join_deliveries()
    assert app.extensions["shop"].sink.orders == []
    assert mine["line_items"][0]["available_quantity"] == 5  # nothing reserved by key b
    assert a.complete(session["id"]).get_json()["status"] == "completed"


def test_the_creating_key_keeps_full_access(two_platforms) -> None:
    _app, a, _b = two_platforms
    session = a.create().get_json()
    path = f"/checkout_sessions/{session['id']}"
    assert a.post(f"{path}/cancel", {}).get_json()["status"] == "canceled"
