"""The ACP checkout-session surface: every endpoint, every status, validated against the schema."""

from __future__ import annotations

import pytest

from tests.conftest import ADDRESS_CA, API_VERSION, assert_acp, cart, payment


def test_create_returns_201_ready_session(acp):
    response = acp.create(cart(("widget", 2)))
    assert response.status_code == 201
    body = response.get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    assert body["id"].startswith("cs_")
    assert body["line_items"][0]["quantity"] == 2
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals == {
        "items_base_amount": 5998,
        "subtotal": 5998,
        "fulfillment": 500,
        "tax": 0,
        "total": 6498,
    }
    assert body["capabilities"]["payment"]["handlers"][0]["name"] == "dev.acp.tokenized.card"
    assert [link["type"] for link in body["links"]] == [
        "terms_of_use",
        "privacy_policy",
        "return_policy",
    ]
    assert body["expires_at"] > body["created_at"]


def test_shipping_options_have_delivery_windows(acp):
    body = acp.create().get_json()
    options = {o["id"]: o for o in body["fulfillment_options"]}
    assert set(options) == {"standard", "express"}
    assert options["express"]["totals"][0]["amount"] == 1500
    assert (
        options["standard"]["earliest_delivery_time"] < options["standard"]["latest_delivery_time"]
    )
    assert body["selected_fulfillment_options"][0]["option_id"] == "standard"


def test_missing_address_is_not_ready_with_message(acp):
    body = acp.create(cart(address=None)).get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "not_ready_for_payment"
    assert body["messages"][0]["code"] == "missing"
    assert body["messages"][0]["param"] == "$.fulfillment_details.address"


def test_digital_only_cart_gets_free_digital_option_without_address(acp):
    body = acp.create(cart(("ebook-team", 1), address=None)).get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    assert [o["type"] for o in body["fulfillment_options"]] == ["digital"]
    assert {t["type"]: t["amount"] for t in body["totals"]}["total"] == 6000


def test_tax_only_in_nexus_per_line_half_up(acp):
    # 2 x 2999 = 5998 * 0.0725 = 434.855 -> 435 ; 1 x 1000 * 0.0725 = 72.5 -> 73 (half-up)
    body = acp.create(cart(("widget", 2), ("scarce", 1), address=ADDRESS_CA)).get_json()
    assert [li["totals"][3]["amount"] for li in body["line_items"]] == [435, 73]
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals["tax"] == 508
    assert totals["total"] == 5998 + 1000 + 500 + 508


def test_update_changes_address_option_and_items(acp):
    created = acp.create().get_json()
    response = acp.post(
        f"/checkout_sessions/{created['id']}",
        {
            "line_items": [{"id": "shirt-red", "quantity": 3}],
            "fulfillment_details": {"address": ADDRESS_CA},
            "selected_fulfillment_options": [
                {"type": "shipping", "option_id": "express", "item_ids": ["li_1"]}
            ],
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSession")
    assert body["line_items"][0]["item"]["id"] == "shirt-red"
    assert body["line_items"][0]["variant_options"] == [{"name": "Color", "value": "Red"}]
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals["fulfillment"] == 1500
    assert totals["tax"] == 435  # 6000 * 0.0725


def test_get_returns_same_session(acp):
    created = acp.create().get_json()
    response = acp.get(f"/checkout_sessions/{created['id']}")
    assert response.status_code == 200
    assert_acp(response.get_json(), "CheckoutSession")
    assert response.get_json()["id"] == created["id"]


def test_complete_creates_order(acp, app):
    created = acp.create().get_json()
    response = acp.complete(created["id"])
    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    assert body["order"] == {
        "id": f"order_{created['id']}",
        "checkout_session_id": created["id"],
        "permalink_url": f"https://store.test/orders/order_{created['id']}",
        "status": "confirmed",
    }


@pytest.mark.parametrize("token", ["tok_visa", "spt_123abc", "pm_card_visa"])
def test_success_tokens(acp, token):
    created = acp.create().get_json()
    assert acp.complete(created["id"], token).get_json()["status"] == "completed"


def test_older_payment_data_shape_is_accepted(acp):
    created = acp.create().get_json()
    response = acp.post(
        f"/checkout_sessions/{created['id']}/complete",
        {"payment_data": {"token": "tok_visa", "provider": "stripe"}},
    )
    assert response.get_json()["status"] == "completed"


@pytest.mark.parametrize(
    ("token", "text"),
    [("tok_chargeDeclined", "declined"), ("tok_chargeDeclinedIncorrectCvc", "security code")],
)
def test_decline_releases_stock_and_allows_retry(acp, app, token, text):
    from shop.checkout import stock
    from shop.state import get_state

    created = acp.create(cart(("scarce", 2))).get_json()
    declined = acp.complete(created["id"], token)
    assert declined.status_code == 200
    body = declined.get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    assert body["messages"][0]["code"] == "payment_declined"
    assert text in body["messages"][0]["content"]
    with app.app_context():
        assert stock.available_quantities(get_state().catalog)["scarce"] == 5
    retried = acp.complete(created["id"], "tok_visa").get_json()
    assert retried["status"] == "completed"
    with app.app_context():
        assert stock.available_quantities(get_state().catalog)["scarce"] == 3


def test_completing_twice_with_new_key_never_charges_again(acp, app):
    created = acp.create(cart(("scarce", 1))).get_json()
    acp.complete(created["id"])
    again = acp.complete(created["id"])
    assert again.status_code == 200
    assert again.get_json()["status"] == "completed"
    from shop.checkout import stock
    from shop.state import get_state

    with app.app_context():
        assert stock.available_quantities(get_state().catalog)["scarce"] == 4


def test_out_of_stock_line_blocks_payment(acp):
    body = acp.create(cart(("shirt-blue", 1))).get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "not_ready_for_payment"
    assert body["messages"][0]["code"] == "out_of_stock"
    assert body["line_items"][0]["availability_status"] == "out_of_stock"


def test_cancel_then_405(acp):
    created = acp.create().get_json()
    response = acp.post(f"/checkout_sessions/{created['id']}/cancel")
    assert response.status_code == 200
    assert_acp(response.get_json(), "CheckoutSession")
    assert response.get_json()["status"] == "canceled"
    again = acp.post(f"/checkout_sessions/{created['id']}/cancel")
    assert again.status_code == 405
    assert_acp(again.get_json(), "Error")
    complete = acp.complete(created["id"])
    assert complete.status_code == 405
    update = acp.post(f"/checkout_sessions/{created['id']}", {"buyer": {"email": "a@b.co"}})
    assert update.status_code == 405


def test_cancel_completed_is_405(acp):
    created = acp.create().get_json()
    acp.complete(created["id"])
    response = acp.post(f"/checkout_sessions/{created['id']}/cancel")
    assert response.status_code == 405
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "session_completed"


def test_short_routes_share_handlers(acp):
    created = acp.post("/acp/checkout/create", cart())
    assert created.status_code == 201
    session_id = created.get_json()["id"]
    updated = acp.client.patch(
        f"/acp/checkout/{session_id}/update",
        json={"fulfillment_details": {"address": ADDRESS_CA}},
        headers=acp.headers(),
    )
    assert updated.status_code == 200
    assert_acp(updated.get_json(), "CheckoutSession")
    assert {t["type"]: t["amount"] for t in updated.get_json()["totals"]}["tax"] == 217
    completed = acp.post(f"/acp/checkout/{session_id}/complete", payment())
    assert_acp(completed.get_json(), "CheckoutSessionWithOrder")


def test_discovery_document(client):
    response = client.get("/.well-known/acp.json")
    assert response.status_code == 200
    assert_acp(response.get_json(), "DiscoveryResponse")
    assert response.get_json()["protocol"]["version"] == API_VERSION


def test_request_id_is_echoed(acp):
    response = acp.post("/checkout_sessions", cart(), **{"Request-Id": "req_abc"})
    assert response.headers["Request-Id"] == "req_abc"


def test_unknown_session_404(acp):
    response = acp.get("/checkout_sessions/cs_nope")
    assert response.status_code == 404
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "session_not_found"


def test_jpy_store_has_no_decimals(make_app):
    app = make_app(config={"currency": "jpy"})
    from tests.conftest import AcpClient

    body = (
        AcpClient(app.test_client())
        .create(cart(("widget", 3), currency="jpy", address=ADDRESS_CA))
        .get_json()
    )
    assert body["currency"] == "jpy"
    assert body["line_items"][0]["unit_amount"] == 2999  # ¥2999: minor unit is the yen
    totals = {t["type"]: t["amount"] for t in body["totals"]}
    assert totals["tax"] == 652  # 8997 * 7.25% = 652.28 -> ¥652, half-up to whole yen
    assert totals["total"] == 8997 + totals["fulfillment"] + 652
    assert all(isinstance(t["amount"], int) for t in body["totals"])
