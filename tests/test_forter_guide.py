"""Forter as its integration guide says: reference_id is optional everywhere.

The guide makes the reference id something the merchant *may* return; its sample requests
carry none. A cart.* without one gets a minted `ref_…` that later calls carry; an
order.created without one but with items, recipient and payment prices the cart, checks the
totals and charges once, in one call. The three requests of the guide's "test endpoints with
curl" step are sent as raw text, in the guide's field names, with this store's product ids
and totals (tests/data: widget $29.99, standard shipping $5, California tax 7.25%).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.test_forter import SECRET, Forter, live_stock, wait_for_orders

ACCOUNT_REQUEST = b"""{
  "event": "account.lookup",
  "email": "john@example.com",
  "phone": "+14155550123"
}"""

CART_REQUEST = b"""{
  "event": "cart.created",
  "currency_id": "USD",
  "items": [
    {"product_id": "widget", "quantity": 2}
  ],
  "recipient": {
    "first_name": "John",
    "last_name": "Doe",
    "email": "john@example.com",
    "phone": "+14155550123",
    "shipping_id": "standard",
    "address": {
      "address1": "123 Main St",
      "city": "San Francisco",
      "region_id": "CA",
      "postal_code": "94105",
      "country_id": "US"
    }
  }
}"""

ORDER_REQUEST = b"""{
  "event": "order.created",
  "currency_id": "USD",
  "items": [
    {"product_id": "widget", "quantity": 2}
  ],
  "recipient": {
    "first_name": "John",
    "last_name": "Doe",
    "email": "john@example.com",
    "phone": "+14155550123",
    "shipping_id": "standard",
    "address": {
      "address1": "123 Main St",
      "city": "San Francisco",
      "region_id": "CA",
      "postal_code": "94105",
      "country_id": "US"
    }
  },
  "payment": {
    "token": "tok_visa",
    "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}
  },
  "totals": {
    "subtotal": 59.98,
    "discount": 0.00,
    "shipping": 5.00,
    "tax": 4.35,
    "total": 69.33
  }
}"""


@pytest.fixture
def guide_app(make_app):
    return make_app(
        config={"forter": {"bearer": True, "hmac": True}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )


@pytest.fixture
def fc(guide_app) -> Forter:
    return Forter(guide_app.test_client())


def send(fc: Forter, path: str, raw: bytes) -> Any:
    return fc.post(path, None, raw=raw)


def sessions(app: Any) -> int:
    from shop.storage import rows_of
    from shop.storage.models import CheckoutSession

    with app.app_context():
        return len(list(_all(rows_of(CheckoutSession))))


def _all(statement: Any) -> Any:
    from shop.storage import transaction

    rows = transaction.execute(statement).all()
    transaction.rollback()
    return rows


def test_guide_account_request(fc):
    response = send(fc, "/api/account", ACCOUNT_REQUEST)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "status": "not_found"}


def test_guide_cart_request_mints_a_reference_that_later_calls_continue(fc, guide_app):
    response = send(fc, "/api/cart", CART_REQUEST)
    assert response.status_code == 200, response.get_json()
    cart = response.get_json()
    ref = cart["reference_id"]
    assert ref.startswith("ref_")
    assert cart["totals"] == {
        "subtotal": 59.98,
        "discount": 0,
        "shipping": 5,
        "tax": 4.35,
        "total": 69.33,
    }
    assert cart["ready_for_checkout"] is True

    # cart.updated carrying the minted reference changes that cart, not a new one.
    updated = fc.cart(ref, [{"product_id": "widget", "quantity": 1}], event="cart.updated")
    assert updated.status_code == 200
    assert updated.get_json()["reference_id"] == ref
    assert updated.get_json()["totals"]["subtotal"] == 29.99
    assert sessions(guide_app) == 1

    # A second cart without a reference is another cart with another reference.
    other = send(fc, "/api/cart", CART_REQUEST).get_json()["reference_id"]
    assert other != ref and other.startswith("ref_")

    # The account lookup now finds the buyer of those carts.
    assert send(fc, "/api/account", ACCOUNT_REQUEST).get_json()["status"] == "active"

    # And order.created carrying the minted reference pays for that cart.
    order = fc.order(ref, 37.16)  # 29.99 + 5.00 shipping + 2.17 tax
    assert order.status_code == 200, order.get_json()
    assert order.get_json()["order_id"]


def test_guide_order_request_prices_checks_and_charges_once(fc, guide_app):
    before = live_stock(guide_app, "widget")
    first = send(fc, "/api/checkout", ORDER_REQUEST)
    assert first.status_code == 200, first.get_json()
    answer = first.get_json()
    assert answer["success"] is True and answer["status"] == "completed"
    assert answer["order_id"].startswith("order_cs_")
    assert answer["reference_id"].startswith("ref_")

    # Forter retries the same request: the same order, nothing charged or taken again.
    again = send(fc, "/api/checkout", ORDER_REQUEST)
    assert again.status_code == 200
    assert again.get_json() == answer

    orders = wait_for_orders(guide_app, 1)
    assert [o["order"]["id"] for o in orders] == [answer["order_id"]]
    assert next(t for t in orders[0]["totals"] if t["type"] == "total")["amount"] == 6933
    if before is not None:
        assert live_stock(guide_app, "widget") == before - 2
    assert sessions(guide_app) == 1


def test_order_without_prior_cart_checks_the_totals_before_charging(fc, guide_app):
    body = json.loads(ORDER_REQUEST)
    body["totals"]["total"] = 60.00
    response = fc.post("/api/checkout", body)
    assert response.status_code == 409
    assert response.get_json()["error_code"] == "totals_mismatch"
    assert guide_app.extensions["shop"].sink.orders == []


def test_order_without_reference_or_items_names_what_is_missing(fc):
    body = json.loads(ORDER_REQUEST)
    del body["items"]
    response = fc.post("/api/checkout", body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error_code"] == "invalid_request"
    assert "reference_id" in answer["error_message"]


@pytest.mark.parametrize(
    ("field", "number"),
    [
        ("total", "1e308"),
        ("total", "1" + "0" * 30),
        ("total", "-1e308"),
        ("total", "1e400"),
        ("tax", "1e308"),
        ("subtotal", "10000000000000.00"),
    ],
)
def test_amounts_the_store_cannot_represent_are_invalid_requests(fc, guide_app, field, number):
    before = live_stock(guide_app, "widget")
    raw = ORDER_REQUEST.replace(
        f'"{field}": {json.loads(ORDER_REQUEST)["totals"][field]:.2f}'.encode(),
        f'"{field}": {number}'.encode(),
    )
    assert raw != ORDER_REQUEST
    response = send(fc, "/api/checkout", raw)
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["error_code"] == "invalid_request"
    assert f"totals.{field}" in answer["error_message"]
    assert len(answer["error_message"]) < 300
    assert guide_app.extensions["shop"].sink.orders == []
    assert live_stock(guide_app, "widget") == before
    assert sessions(guide_app) == 0


@pytest.mark.parametrize("number", ["1e308", "1" + "0" * 30, "1e400"])
def test_quantities_the_store_cannot_represent_name_the_item(fc, number):
    raw = CART_REQUEST.replace(b'"quantity": 2', f'"quantity": {number}'.encode())
    response = send(fc, "/api/cart", raw)
    assert response.status_code == 400
    assert "items[0].quantity" in response.get_json()["error_message"]
    assert len(response.get_json()["error_message"]) < 300
