"""Pricing rules the surfaces share: tax nexus matched within the address's country, and an
unknown fulfillment option answered instead of silently replaced (ACP side; Forter's side is in
tests/test_forter.py)."""

from __future__ import annotations

from decimal import Decimal

from shop.pricing.quotes import tax_rate
from tests.conftest import ADDRESS_CA, assert_acp, cart

TORONTO = {
    "name": "Jo Tremblay",
    "line_one": "100 Queen St W",
    "city": "Toronto",
    "state": "ON",
    "country": "CA",
    "postal_code": "M5H 2N2",
}
VANCOUVER = {**TORONTO, "city": "Vancouver", "state": "BC", "postal_code": "V6B 1A1"}
BERLIN = {**TORONTO, "city": "Berlin", "state": "BE", "country": "DE", "postal_code": "10117"}


def _rate(app, address):
    return tax_rate(app.extensions["shop"].settings, address)


def test_a_bare_nexus_key_is_a_region_of_the_home_country(app):
    # tests/data/config.json: {"CA": 0.0725, "NY": 0.04}, homeCountry defaults to US
    assert _rate(app, ADDRESS_CA) == Decimal("0.0725")
    assert _rate(app, {**ADDRESS_CA, "state": "US-CA"}) == Decimal("0.0725")
    assert _rate(app, {**ADDRESS_CA, "state": "ny"}) == Decimal("0.04")
    assert _rate(app, TORONTO) is None  # ON, CA is Ontario in Canada, not California
    assert _rate(app, {**TORONTO, "state": "CA"}) is None  # region "CA" of Canada: no nexus
    assert _rate(app, {**ADDRESS_CA, "state": "OR"}) is None
    assert _rate(app, {"state": "CA"}) == Decimal("0.0725")  # no country: the home country


def test_toronto_is_not_charged_californias_tax(acp):
    body = acp.create(cart(("widget", 2), address=TORONTO)).get_json()
    assert_acp(body, "CheckoutSession")
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals.get("tax", 0) == 0
    assert totals["total"] == 2 * 2999 + 500


def test_iso_3166_2_keys_and_whole_countries(make_app):
    app = make_app(config={"tax": {"nexus": {"CA": 0.0725, "CA-ON": 0.13, "DE-*": 0.19}}})
    assert _rate(app, ADDRESS_CA) == Decimal("0.0725")
    assert _rate(app, TORONTO) == Decimal("0.13")
    assert _rate(app, VANCOUVER) is None
    assert _rate(app, BERLIN) == Decimal("0.19")
    assert _rate(app, {**BERLIN, "state": ""}) == Decimal("0.19")


def test_home_country_changes_what_a_bare_key_means(make_app):
    app = make_app(config={"tax": {"homeCountry": "ca", "nexus": {"ON": 0.13, "US-NY": 0.04}}})
    assert _rate(app, TORONTO) == Decimal("0.13")
    assert _rate(app, {**ADDRESS_CA, "state": "NY"}) == Decimal("0.04")
    assert _rate(app, ADDRESS_CA) is None
    assert _rate(app, {"state": "ON"}) == Decimal("0.13")


def test_unknown_option_id_is_a_message_not_another_price(acp):
    created = acp.create().get_json()
    response = acp.post(
        f"/checkout_sessions/{created['id']}",
        {
            "selected_fulfillment_options": [
                {"type": "shipping", "option_id": "overnight", "item_ids": ["li_1"]}
            ]
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "not_ready_for_payment"
    [invalid] = [m for m in body["messages"] if m["code"] == "invalid"]
    assert invalid["type"] == "error"
    assert invalid["param"] == "$.selected_fulfillment_options[0].option_id"
    assert "selected_fulfillment_options" not in body  # nothing chosen in the buyer's name
    assert "fulfillment" not in {t["type"] for t in body["totals"]}
    paid = acp.complete(created["id"]).get_json()
    assert paid["status"] == "not_ready_for_payment" and "order" not in paid

    fixed = acp.post(
        f"/checkout_sessions/{created['id']}",
        {
            "selected_fulfillment_options": [
                {"type": "shipping", "option_id": "express", "item_ids": ["li_1"]}
            ]
        },
    ).get_json()
    assert fixed["status"] == "ready_for_payment"
    assert fixed["selected_fulfillment_options"][0]["option_id"] == "express"
    assert all(m["code"] != "invalid" for m in fixed["messages"])


def test_an_option_of_another_cart_kind_is_a_stale_choice_not_an_error(acp):
    # "digital" is this store's option for digital-only carts: once the cart holds a physical
    # item it is no longer offered, and the first shipping option applies.
    created = acp.create(
        cart(("ebook-team", 1), address=ADDRESS_CA, fulfillment_option_id="digital")
    ).get_json()
    assert created["selected_fulfillment_options"][0]["option_id"] == "digital"
    body = acp.post(
        f"/checkout_sessions/{created['id']}", {"line_items": [{"id": "widget", "quantity": 1}]}
    ).get_json()
    assert all(m["code"] != "invalid" for m in body["messages"])
    assert body["status"] == "ready_for_payment"
    assert body["selected_fulfillment_options"][0]["option_id"] == "standard"
