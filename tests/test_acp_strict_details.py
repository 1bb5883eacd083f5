"""Details a strict agent relies on: Idempotency-Key echoed; payment_data only for the handlers
the session offered; a country must be an ISO 3166-1 alpha-2 code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADDRESS_CA, assert_acp, cart, join_deliveries


def test_idempotency_key_is_echoed_on_every_answer(acp) -> None:
    created = acp.create(key="key-create-1")
    assert created.status_code == 201
    assert created.headers["Idempotency-Key"] == "key-create-1"

    replay = acp.create(key="key-create-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Idempotency-Key"] == "key-create-1"

    conflict = acp.post("/checkout_sessions", cart(("scarce", 1)), key="key-create-1")
    assert conflict.status_code == 422
    assert conflict.headers["Idempotency-Key"] == "key-create-1"

    refused = acp.post("/checkout_sessions", {"line_items": "x"}, key="key-bad")
    assert refused.status_code == 400
    assert refused.headers["Idempotency-Key"] == "key-bad"

    fetched = acp.client.get(
        f"/checkout_sessions/{created.get_json()['id']}",
        headers=acp.headers("key-on-a-get"),
    )
    assert fetched.headers["Idempotency-Key"] == "key-on-a-get"


def test_no_idempotency_key_no_echo(client) -> None:
    response = client.get("/.well-known/acp.json")
    assert "Idempotency-Key" not in response.headers


def _payment(handler_id: str | None, instrument: str = "card", credential: str = "spt"):
    data: dict[str, Any] = {
        "instrument": {"type": instrument, "credential": {"type": credential, "token": "tok_visa"}}
    }
    if handler_id is not None:
        data["handler_id"] = handler_id
    return {"payment_data": data}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (_payment("bogus_handler"), "invalid_payment_handler", "$.payment_data.handler_id"),
        (_payment(None), "missing_field", "$.payment_data.handler_id"),
        (
            _payment("card_tokenized", instrument="crypto"),
            "unsupported_instrument",
            "$.payment_data.instrument.type",
        ),
        (
            _payment("card_tokenized", credential="wallet_token"),
            "unsupported_credential",
            "$.payment_data.instrument.credential.type",
        ),
        (
            {"payment_data": {"token": "tok_visa", "provider": "adyen"}},
            "unsupported_payment_provider",
            "$.payment_data.provider",
        ),
    ],
    ids=["unknown-handler", "no-handler", "crypto", "wallet-credential", "legacy-other-psp"],
)
def test_payment_data_the_session_never_offered_is_refused(acp, app, body, code, param) -> None:
    session = acp.create(cart(("scarce", 2))).get_json()
    path = f"/checkout_sessions/{session['id']}"

    refused = acp.post(f"{path}/complete", body)

    assert refused.status_code == 400
    error = refused.get_json()
    assert_acp(error, "Error")
    assert (error["type"], error["code"], error["param"]) == ("invalid_request", code, param)
    after = acp.get(path).get_json()
    assert after["status"] == "ready_for_payment"
    assert after["line_items"][0]["available_quantity"] == 5  # stock untouched
    join_deliveries()
    assert app.extensions["shop"].sink.orders == []  # nothing charged, no order
    assert acp.complete(session["id"]).get_json()["status"] == "completed"


@pytest.mark.parametrize("country", ["XX", "INVALID", "USA", "1"])
def test_a_country_that_is_not_iso_3166_alpha_2_is_a_message(acp, country) -> None:
    body = acp.create(cart(address={**ADDRESS_CA, "country": country})).get_json()
    assert body["status"] == "not_ready_for_payment"
    [message] = [m for m in body["messages"] if m["type"] == "error"]
    assert message["code"] == "invalid"
    assert message["param"] == "$.fulfillment_details.address.country"

    refused = acp.complete(body["id"])
    assert refused.get_json()["status"] == "not_ready_for_payment"


def test_a_lower_case_country_code_is_read_as_its_code(acp) -> None:
    body = acp.create(cart(address={**ADDRESS_CA, "country": "us"})).get_json()
    assert body["status"] == "ready_for_payment"
    assert next(t["amount"] for t in body["totals"] if t["type"] == "tax") > 0


def test_fixing_the_country_makes_the_session_ready(acp) -> None:
    body = acp.create(cart(address={**ADDRESS_CA, "country": "XX"})).get_json()
    fixed = acp.post(
        f"/checkout_sessions/{body['id']}",
        {"fulfillment_details": {"name": "Jane Doe", "address": ADDRESS_CA}},
    ).get_json()
    assert fixed["status"] == "ready_for_payment"
    assert fixed["messages"] == []


def test_the_forter_surface_shares_the_country_rule(make_app) -> None:
    from tests.test_forter import RECIPIENT_CA, SECRET, Forter, widget

    app = make_app(
        config={"forter": {"bearer": True, "hmac": True}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )
    fc = Forter(app.test_client())
    recipient = {**RECIPIENT_CA, "address": {**RECIPIENT_CA["address"], "country_id": "XX"}}

    cart_answer = fc.cart("ref-xx", widget(1), country_id="XX", recipient=recipient).get_json()
    assert cart_answer["ready_for_checkout"] is False
    assert [m["code"] for m in cart_answer["messages"]] == ["invalid"]

    order = fc.order("ref-xx", cart_answer["totals"]["total"])
    assert order.status_code == 400
    assert order.get_json()["success"] is False
    join_deliveries()
    assert app.extensions["shop"].sink.orders == []
