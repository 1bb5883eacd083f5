"""Checkout over the ACP HTTP API with paymentProvider razorpay: orders, verify, fetch, capture."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.conftest import ADDRESS_OR, RecordingSink, assert_acp, cart
from tests.fake_psp import RAZORPAY_KEY_ID, RAZORPAY_KEY_SECRET, FakePSP
from tests.psp_app import (
    agent,
    provider_app,
    razorpay_checkout_signature,
    razorpay_payment_data,
    row_of,
    stock_of,
    total,
    wait_for,
)

ORDERS = "/v1/orders"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def app(make_app, fake_psp: FakePSP, sink: RecordingSink):
    return provider_app(make_app, fake_psp, "razorpay", sink)


@pytest.fixture
def acp(app):
    return agent(app)


def _ready(acp, *items: tuple[str, int]) -> dict[str, Any]:
    created = acp.create(cart(*items, address=ADDRESS_OR, currency="inr"))
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["status"] == "ready_for_payment"
    return body


def _order_id(session: dict[str, Any]) -> str:
    [handler] = session["capabilities"]["payment"]["handlers"]
    return handler["config"]["order_id"]


def _complete(acp, session_id: str, body: dict[str, Any]):
    return acp.post(f"/checkout_sessions/{session_id}/complete", body)


def test_ready_session_gets_a_razorpay_order_for_its_total(acp, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("widget", 1))
    assert_acp(session, "CheckoutSession")

    [sent] = fake_psp.sent("POST", ORDERS)
    assert sent.body == {
        "amount": total(session),
        "currency": "INR",
        "receipt": session["id"],
        "notes": {"checkout_session_id": session["id"]},
    }
    assert total(session) == 2999 + 500  # paise: the same integer minor units as the session
    [handler] = session["capabilities"]["payment"]["handlers"]
    assert_acp(handler, "PaymentHandler")
    assert handler["psp"] == "razorpay"
    assert handler["config"]["key_id"] == RAZORPAY_KEY_ID
    assert handler["config"]["order_id"] in fake_psp.razorpay_orders
    assert RAZORPAY_KEY_SECRET not in str(session)


def test_not_ready_session_has_no_order_until_it_is_ready(acp, fake_psp: FakePSP) -> None:
    created = acp.create(cart(("widget", 1), address=None, currency="inr")).get_json()
    assert created["status"] == "not_ready_for_payment"
    assert "order_id" not in created["capabilities"]["payment"]["handlers"][0]["config"]
    assert fake_psp.sent("POST", ORDERS) == []

    ready = acp.post(
        f"/checkout_sessions/{created['id']}", {"fulfillment_details": {"address": ADDRESS_OR}}
    ).get_json()
    assert ready["status"] == "ready_for_payment"
    assert _order_id(ready) in fake_psp.razorpay_orders


def test_an_update_that_changes_the_total_creates_a_new_order(acp, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("widget", 1))
    first = _order_id(session)
    same = acp.post(
        f"/checkout_sessions/{session['id']}", {"buyer": {"email": "jo@example.com"}}
    ).get_json()
    assert _order_id(same) == first  # same total: the order stands
    updated = acp.post(
        f"/checkout_sessions/{session['id']}", {"line_items": [{"id": "widget", "quantity": 2}]}
    ).get_json()

    second = _order_id(updated)
    assert second != first
    assert fake_psp.razorpay_orders[second]["amount"] == total(updated) == 2 * 2999 + 500
    assert len(fake_psp.sent("POST", ORDERS)) == 2


def test_signed_checkout_payment_is_verified_fetched_captured_and_completes(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _ready(acp, ("scarce", 2))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, total(session))

    response = _complete(acp, session["id"], razorpay_payment_data(order_id, payment_id))

    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    assert len(fake_psp.sent("GET", rf"/v1/payments/{payment_id}")) == 1
    [capture] = fake_psp.sent("POST", rf"/v1/payments/{payment_id}/capture")
    assert capture.body == {"amount": total(session), "currency": "INR"}
    assert fake_psp.razorpay_payments[payment_id]["status"] == "captured"
    assert row_of(app, session["id"]).payment_reference == payment_id
    assert stock_of(app, "scarce") == 3
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "razorpay", "reference": payment_id}
    assert order["currency"] == "inr"


@pytest.mark.parametrize("shape", ["values beside the token", "values as a JSON token"])
def test_older_token_provider_shape_pays_the_same_way(
    acp, app, fake_psp: FakePSP, sink: RecordingSink, shape: str
) -> None:
    session = _ready(acp, ("scarce", 1))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, total(session))
    values = razorpay_payment_data(order_id, payment_id)["payment_data"]["instrument"]
    values = {k: v for k, v in values["credential"].items() if k.startswith("razorpay_")}
    if shape == "values beside the token":
        payment_data = {"token": payment_id, "provider": "razorpay", **values}
    else:
        payment_data = {"token": json.dumps(values), "provider": "razorpay"}

    response = _complete(acp, session["id"], {"payment_data": payment_data})

    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    [capture] = fake_psp.sent("POST", rf"/v1/payments/{payment_id}/capture")
    assert capture.body == {"amount": total(session), "currency": "INR"}
    assert row_of(app, session["id"]).payment_reference == payment_id
    assert stock_of(app, "scarce") == 4
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "razorpay", "reference": payment_id}


def test_older_shape_with_a_bare_payment_id_is_declined(acp, app, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("scarce", 1))
    payment_id = fake_psp.add_razorpay_payment(_order_id(session), total(session))

    _declined(acp, app, session, {"payment_data": {"token": payment_id, "provider": "razorpay"}})

    assert fake_psp.sent("GET", r"/v1/payments/.*") == []  # unsigned: nothing is looked up


def _declined(acp, app, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    answer = _complete(acp, session["id"], body)
    assert answer.status_code == 200
    result = answer.get_json()
    assert_acp(result, "CheckoutSession")
    assert result["status"] == "ready_for_payment"
    [message] = [m for m in result["messages"] if m["type"] == "error"]
    assert (message["code"], message["param"]) == ("payment_declined", "$.payment_data")
    assert stock_of(app, "scarce") == 5
    return message


def test_bad_signature_is_declined_before_any_call(acp, app, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("scarce", 1))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, total(session))
    forged = razorpay_checkout_signature(order_id, payment_id, secret="someone-elses-secret")

    message = _declined(acp, app, session, razorpay_payment_data(order_id, payment_id, forged))

    assert "could not be verified" in message["content"]
    assert fake_psp.sent("GET", r"/v1/payments/.*") == []
    assert fake_psp.razorpay_payments[payment_id]["status"] == "authorized"
    # The genuine values still pay: a decline never closes the session.
    paid = _complete(acp, session["id"], razorpay_payment_data(order_id, payment_id)).get_json()
    assert paid["status"] == "completed"


def test_payment_for_another_order_is_declined(acp, app, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("scarce", 1))
    other = _ready(acp, ("widget", 1))
    payment_id = fake_psp.add_razorpay_payment(_order_id(other), total(other))

    _declined(acp, app, session, razorpay_payment_data(_order_id(other), payment_id))

    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []


@pytest.mark.parametrize(("amount", "currency"), [(-100, "INR"), (0, "USD")])
def test_amount_or_currency_mismatch_is_declined_and_not_captured(
    acp, app, fake_psp: FakePSP, amount: int, currency: str
) -> None:
    session = _ready(acp, ("scarce", 1))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, total(session) + amount, currency)

    message = _declined(acp, app, session, razorpay_payment_data(order_id, payment_id))

    assert "does not match" in message["content"]
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []
    assert fake_psp.razorpay_payments[payment_id]["status"] == "authorized"


def test_failed_payment_is_declined_with_razorpays_reason(acp, app, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("scarce", 1))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(
        order_id,
        total(session),
        status="failed",
        error_code="BAD_REQUEST_ERROR",
        error_description="Payment failed because the card was declined by the bank.",
    )

    message = _declined(acp, app, session, razorpay_payment_data(order_id, payment_id))

    assert message["content"] == "Payment failed because the card was declined by the bank."
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []


def test_already_captured_payment_completes_without_a_second_capture(
    acp, fake_psp: FakePSP
) -> None:
    session = _ready(acp, ("widget", 1))
    order_id = _order_id(session)
    payment_id = fake_psp.add_razorpay_payment(order_id, total(session), status="captured")

    body = _complete(acp, session["id"], razorpay_payment_data(order_id, payment_id)).get_json()

    assert body["status"] == "completed"
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []


def test_missing_checkout_values_are_declined(acp, app, fake_psp: FakePSP) -> None:
    session = _ready(acp, ("scarce", 1))
    body = {
        "payment_data": {
            "handler_id": "razorpay",
            "instrument": {
                "type": "razorpay",
                "credential": {"type": "razorpay", "token": "pay_only_an_id"},
            },
        }
    }

    _declined(acp, app, session, body)

    assert fake_psp.sent("GET", r"/v1/payments/.*") == []


def test_razorpay_down_when_the_session_becomes_ready_is_424(make_app, fake_psp: FakePSP) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    acp = agent(provider_app(make_app, fake_psp, "razorpay", RAZORPAY_API_BASE=closed))

    response = acp.create(cart(("widget", 1), address=ADDRESS_OR, currency="inr"))

    assert response.status_code == 424
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "payment_provider_unavailable"
    assert response.headers["Retry-After"]


def test_a_wrong_razorpay_key_pair_is_the_merchants_setup_error(
    make_app, fake_psp: FakePSP, caplog
) -> None:
    import logging

    from tests.psp_app import agent, provider_app

    app = provider_app(make_app, fake_psp, "razorpay", RAZORPAY_KEY_SECRET="not_the_secret")
    with caplog.at_level(logging.ERROR):
        response = agent(app).create(cart(("ebook-single", 1), address=None, currency="inr"))

    assert response.status_code == 503
    error = response.get_json()
    assert (error["type"], error["code"]) == ("processing_error", "payment_provider_error")
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "RAZORPAY_KEY_SECRET" in line and "not_the_secret" not in line
