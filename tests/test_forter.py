"""Forter merchant endpoints: account / cart / checkout on the one checkout domain, and auth."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

import pytest

from shop.checkout import stock
from shop.storage.models import CheckoutSession, db

SECRET = "forter-test-secret"
HEADER = "test-store-signature"  # storeName "Test Store"

RECIPIENT_CA = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane@example.com",
    "phone": "+1 415 555 0100",
    "shipping_id": "express",
    "address": {
        "address1": "1 Market St",
        "address2": "Suite 5",
        "city": "San Francisco",
        "region_id": "CA",
        "postal_code": "94105",
        "country_id": "US",
    },
}


def sign(body: bytes, secret: str = SECRET) -> str:
    return "hmac-sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def decimals(response: Any) -> dict[str, Any]:
    """Parse a response keeping JSON numbers exact (29.99 -> Decimal('29.99'))."""
    return json.loads(response.data, parse_float=Decimal)


class Forter:
    """Sends Forter-shaped events with the bearer secret and the store's HMAC header."""

    def __init__(self, client: Any, secret: str = SECRET) -> None:
        self.client = client
        self.secret = secret

    def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> Any:
        data = raw if raw is not None else json.dumps(body, default=float).encode()
        sent = {"Authorization": f"Bearer {self.secret}", HEADER: sign(data, self.secret)}
        sent.update(headers or {})
        return self.client.post(path, data=data, content_type="application/json", headers=sent)

    def cart(
        self, ref: str, items: list[dict[str, Any]], event: str = "cart.created", **extra: Any
    ) -> Any:
        body = {
            "event": event,
            "reference_id": ref,
            "currency_id": "USD",
            "region_id": "CA",
            "country_id": "US",
            "items": items,
            **extra,
        }
        return self.post("/api/cart", body)

    def order(self, ref: str, total: Any, token: str = "tok_visa", **extra: Any) -> Any:
        body = {
            "event": "order.created",
            "reference_id": ref,
            "currency_id": "USD",
            "region_id": "CA",
            "country_id": "US",
            "payment": {
                "token": token,
                "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
            },
            "totals": {"total": total},
            **extra,
        }
        return self.post("/api/checkout", body)


@pytest.fixture
def forter_app(make_app):
    return make_app(
        config={"forter": {"bearer": True, "hmac": True}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )


@pytest.fixture
def fc(forter_app) -> Forter:
    return Forter(forter_app.test_client())


def widget(quantity: int = 2) -> list[dict[str, Any]]:
    return [{"product_id": "widget", "quantity": quantity}]


def wait_for_orders(app: Any, count: int) -> list[dict[str, Any]]:
    sink = app.extensions["shop"].sink
    deadline = time.monotonic() + 5
    while len(sink.orders) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a second (wrong) delivery would show up by now
    return sink.orders


def live_stock(app: Any, item_id: str) -> int | None:
    with app.app_context():
        return stock.available_quantities(app.extensions["shop"].catalog)[item_id]


# ---------------------------------------------------------------- cart


def test_cart_prices_items_coupon_tax_and_selected_shipping_in_decimals(fc):
    response = fc.cart("ref-1", widget(2), coupon="TEN", recipient=RECIPIENT_CA)
    assert response.status_code == 200
    body = decimals(response)
    assert body["success"] is True
    assert body["reference_id"] == "ref-1"
    assert body["currency_id"] == "USD"
    # 2 x 29.99 = 59.98; TEN = 10% = 6.00 (599.8 half-up); tax 7.25% of 53.98 = 3.91
    # (391.355 half-up); express 15.00; total 53.98 + 15.00 + 3.91 = 72.89
    assert body["items"] == [
        {
            "product_id": "widget",
            "title": "Premium Widget",
            "quantity": 2,
            "price": Decimal("29.99"),
            "effective_price": Decimal("26.99"),
            "subtotal": Decimal("59.98"),
            "available": True,
        }
    ]
    assert body["totals"] == {
        "subtotal": Decimal("59.98"),
        "discount": Decimal("6.0"),
        "shipping": Decimal("15.0"),
        "tax": Decimal("3.91"),
        "total": Decimal("72.89"),
    }
    totals = body["totals"]
    assert (
        totals["subtotal"] - totals["discount"] + totals["shipping"] + totals["tax"]
        == totals["total"]
    )
    assert sum(i["subtotal"] for i in body["items"]) == totals["subtotal"]
    assert body["selected_shipping_id"] == "express"
    assert body["shipping_options"] == [
        {"id": "standard", "title": "Standard", "description": "3-5 days", "price": Decimal("5.0")},
        {"id": "express", "title": "Express", "description": "1-2 days", "price": Decimal("15.0")},
    ]
    assert body["coupons"] == [{"code": "TEN", "applied": True, "amount": Decimal("6.0")}]
    assert body["ready_for_checkout"] is True
    assert b"29.99" in response.data and b"2999" not in response.data


def test_cart_totals_exact_to_the_cent_across_lines(fc):
    # 3 x 29.99 + 2 x 10.00 = 109.97; tax 7.25%: 89.97 -> 6.52 (652.2825), 20.00 -> 1.45
    body = decimals(
        fc.cart(
            "ref-cents",
            [{"product_id": "widget", "quantity": 3}, {"product_id": "scarce", "quantity": 2}],
            recipient={**RECIPIENT_CA, "shipping_id": "standard"},
        )
    )
    assert body["totals"] == {
        "subtotal": Decimal("109.97"),
        "discount": Decimal("0.0"),
        "shipping": Decimal("5.0"),
        "tax": Decimal("7.97"),
        "total": Decimal("122.94"),
    }


@pytest.mark.parametrize(
    "event", ["cart.created", "cart_created", "cart created", "CART.CREATED", "cart.updated"]
)
def test_event_type_spellings_and_unknown_fields_are_accepted(fc, event):
    response = fc.post(
        "/api/cart",
        {
            "event": event,
            "event_id": "evt_1",
            "timestamp": "2026-05-01T10:00:00Z",
            "data": {
                "reference_id": "ref-env",
                "currency_id": "usd",
                "region_id": "US-NY",
                "country_id": "US",
                "items": [
                    {"product_id": "widget", "quantity": 1, "price": 29.99, "whatever": True}
                ],
            },
            "merchant": {"id": "m_1"},
        },
    )
    assert response.status_code == 200, response.get_json()
    body = decimals(response)
    # region_id "US-NY" alone is enough for tax by nexus (4% of 29.99 = 1.1996 -> 1.20)
    assert body["totals"]["tax"] == Decimal("1.2")
    assert body["ready_for_checkout"] is False  # no street address yet
    assert "recipient.address" in body["messages"][0]["message"]


def test_reference_id_is_sticky_one_session(fc, forter_app):
    fc.cart("ref-sticky", widget(1), recipient=RECIPIENT_CA)
    body = decimals(
        fc.cart("ref-sticky", widget(4), event="cart.updated", coupon={"code": "FIVEOFF"})
    )
    assert body["items"][0]["quantity"] == 4
    assert body["totals"]["discount"] == Decimal("5.0")
    assert body["selected_shipping_id"] == "express"  # kept from the first event
    # the street address survives an update that only carries region_id/country_id
    assert body["ready_for_checkout"] is True
    with forter_app.app_context():
        rows = (
            db.session.execute(
                db.select(CheckoutSession).where(
                    CheckoutSession.forter_reference_id == "ref-sticky"
                )
            )
            .scalars()
            .all()
        )
        assert len(rows) == 1
        assert db.session.query(CheckoutSession).count() == 1


def test_digital_only_cart_gets_the_free_digital_option(fc):
    body = decimals(
        fc.cart("ref-digital", [{"product_id": "ebook", "variant_id": "ebook-team", "quantity": 1}])
    )
    assert body["shipping_options"] == [
        {
            "id": "digital",
            "title": "Digital delivery",
            "description": "Delivered by email right after payment",
            "price": 0,
        }
    ]
    assert body["totals"]["total"] == Decimal("60.0") + Decimal("4.35")  # CA tax on 60.00
    assert body["ready_for_checkout"] is True


def test_unavailable_item_and_bad_coupon_are_reported_in_the_cart(fc):
    body = decimals(
        fc.cart(
            "ref-blue",
            [{"product_id": "shirt-blue", "quantity": 1}],
            coupon="OLD",
            recipient=RECIPIENT_CA,
        )
    )
    assert body["items"][0]["available"] is False
    assert body["coupons"][0]["applied"] is False
    assert {m["code"] for m in body["messages"]} >= {"out_of_stock", "coupon_expired"}
    assert body["ready_for_checkout"] is False


@pytest.mark.parametrize(
    "change",
    [
        {"items": [{"product_id": "nope", "quantity": 1}]},
        {"items": [{"product_id": "shirt", "quantity": 1}]},  # has variants: name one
        {"items": [{"product_id": "widget", "quantity": 0}]},
        {"items": [{"product_id": "widget", "quantity": 1.5}]},
        {"items": "widget"},
        {"items": []},
        {"currency_id": "EUR"},
        {"event": "order.created"},
    ],
)
def test_bad_cart_requests_answer_invalid_request(fc, change):
    body = {
        "event": "cart.created",
        "reference_id": "ref-bad",
        "currency_id": "USD",
        "items": widget(1),
        **change,
    }
    response = fc.post("/api/cart", {k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["success"] is False
    assert answer["error_code"] == "invalid_request"
    assert answer["error_message"]


def test_malformed_json_is_invalid_request(fc):
    response = fc.post("/api/cart", None, raw=b"{not json")
    assert response.status_code == 400
    assert response.get_json()["error_code"] == "invalid_request"


# ---------------------------------------------------------------- checkout


def count_charges(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Wrap the real provider's charge; return the list of requests it was given."""
    provider = app.extensions["shop"].provider
    real_charge = provider.charge
    calls: list[Any] = []

    def charge(request: Any) -> Any:
        calls.append(request)
        return real_charge(request)

    monkeypatch.setattr(provider, "charge", charge)
    return calls


def test_order_created_charges_once_and_hands_the_order_to_the_sink(fc, forter_app, monkeypatch):
    charges = count_charges(forter_app, monkeypatch)
    cart = decimals(fc.cart("ref-order", widget(2), recipient=RECIPIENT_CA))
    total = cart["totals"]["total"]  # 59.98 + 15.00 + 4.35 = 79.33
    assert total == Decimal("79.33")
    response = fc.order("ref-order", total)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["success"] is True
    assert answer["order_id"].startswith("order_cs_")
    orders = wait_for_orders(forter_app, 1)
    assert len(orders) == 1
    assert orders[0]["order"]["id"] == answer["order_id"]
    assert live_stock(forter_app, "widget") == 98

    # the orchestrator retries order.created (up to 3 times): same order, nothing charged
    for _ in range(3):
        again = fc.order("ref-order", total)
        assert again.status_code == 200
        assert again.get_json()["order_id"] == answer["order_id"]
    assert len(wait_for_orders(forter_app, 1)) == 1
    assert live_stock(forter_app, "widget") == 98
    assert len(charges) == 1
    assert charges[0].amount == 7933 and charges[0].currency == "usd"

    closed = fc.cart("ref-order", widget(5), event="cart.updated")
    assert closed.status_code == 409
    assert closed.get_json()["error_code"] == "invalid_request"


def test_totals_mismatch_charges_nothing(fc, forter_app):
    fc.cart("ref-mismatch", widget(1), recipient=RECIPIENT_CA)
    response = fc.order("ref-mismatch", 30.00)  # the cart said 29.99 + 15.00 + 2.17 = 47.16
    assert response.status_code == 409
    assert response.get_json()["error_code"] == "totals_mismatch"
    assert "47.16" in response.get_json()["error_message"]
    assert live_stock(forter_app, "widget") == 100
    ok = fc.order("ref-mismatch", "47.16")  # a decimal string is read exactly too
    assert ok.status_code == 200


def test_any_total_sent_must_match_and_sub_cent_amounts_are_refused(fc):
    fc.cart("ref-parts", widget(1), recipient=RECIPIENT_CA)
    wrong_tax = fc.post(
        "/api/checkout",
        {
            "event": "order.created",
            "reference_id": "ref-parts",
            "payment": {"token": "tok_visa"},
            "totals": {"subtotal": 29.99, "tax": 2.00, "shipping": 15.00, "total": 47.16},
        },
    )
    assert wrong_tax.get_json()["error_code"] == "totals_mismatch"
    sub_cent = fc.order("ref-parts", 47.155)
    assert sub_cent.status_code == 400
    assert sub_cent.get_json()["error_code"] == "invalid_request"


def test_price_change_between_cart_and_order_is_a_totals_mismatch(fc, forter_app):
    fc.cart("ref-coupon", widget(1), coupon="TEN", recipient=RECIPIENT_CA)
    # order.created drops the coupon: the domain re-prices and the 10% is gone
    response = fc.order("ref-coupon", Decimal("44.16"), coupon=[])
    assert response.get_json()["error_code"] == "totals_mismatch"


def test_out_of_stock_at_checkout_answers_inventory_unavailable(fc, forter_app):
    cart = decimals(
        fc.cart("ref-scarce", [{"product_id": "scarce", "quantity": 3}], recipient=RECIPIENT_CA)
    )
    with forter_app.app_context():
        stock.set_stock("scarce", 2)  # another buyer took three of the five
    response = fc.order("ref-scarce", cart["totals"]["total"])
    assert response.status_code == 409
    answer = response.get_json()
    assert answer == {
        "success": False,
        "error_code": "inventory_unavailable",
        "error_message": answer["error_message"],
    }
    assert live_stock(forter_app, "scarce") == 2
    assert wait_for_orders(forter_app, 0) == []


def test_declined_token_answers_payment_declined_and_a_new_card_may_retry(fc, forter_app):
    cart = decimals(fc.cart("ref-decline", widget(1), recipient=RECIPIENT_CA))
    declined = fc.order("ref-decline", cart["totals"]["total"], token="tok_chargeDeclined")
    assert declined.status_code == 402
    assert declined.get_json()["error_code"] == "payment_declined"
    assert live_stock(forter_app, "widget") == 100  # the reservation was released
    paid = fc.order("ref-decline", cart["totals"]["total"], token="tok_visa")
    assert paid.status_code == 200
    assert live_stock(forter_app, "widget") == 99


def test_order_created_without_a_cart_prices_its_own_items(fc, forter_app):
    response = fc.order(
        "ref-direct",
        64.34,
        items=widget(1),
        recipient={
            **RECIPIENT_CA,
            "shipping_id": "standard",
            "address": {**RECIPIENT_CA["address"], "region_id": "US-NY"},
        },
    )
    # 29.99 + 5.00 + NY 4% of 29.99 = 1.20 -> 36.19, not 64.34
    assert response.get_json()["error_code"] == "totals_mismatch"
    assert fc.order("ref-direct", 36.19).status_code == 200


@pytest.mark.parametrize(
    "change, status",
    [
        ({"payment": {"card": {"last4": "4242"}}}, 400),  # no token
        ({"totals": {}}, 400),
        ({"reference_id": "ref-unknown"}, 404),
    ],
)
def test_bad_order_requests(fc, change, status):
    fc.cart("ref-o", widget(1), recipient=RECIPIENT_CA)
    body = {
        "event": "order.created",
        "reference_id": "ref-o",
        "payment": {"token": "tok_visa"},
        "totals": {"total": 47.16},
        **change,
    }
    response = fc.post("/api/checkout", body)
    assert response.status_code == status
    assert response.get_json()["error_code"] == "invalid_request"


def test_order_without_street_address_is_refused(fc, forter_app):
    cart = decimals(fc.cart("ref-nostreet", widget(1)))  # region_id/country_id only
    response = fc.order("ref-nostreet", cart["totals"]["total"])
    assert response.status_code == 400
    assert "address" in response.get_json()["error_message"]
    assert live_stock(forter_app, "widget") == 100


# ---------------------------------------------------------------- account


@pytest.mark.parametrize(
    "customer, status",
    [
        ({"email": "Blocked@Example.com"}, "blocked"),
        ({"email": "jane@example.com"}, "not_found"),
        ({"phone": "+1 (555) 010-9999"}, "blocked"),
        ({}, "not_found"),
    ],
)
def test_account_lookup(make_app, customer, status):
    app = make_app(
        config={"blockedBuyers": ["blocked@example.com", "+15550109999"]},
        env={"FORTER_WEBHOOK_SECRET": SECRET},
    )
    response = Forter(app.test_client()).post(
        "/api/account",
        {"event": "account.lookup", "reference_id": "ref-acct", "customer": customer},
    )
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "status": status, "reference_id": "ref-acct"}


def account(fc: Forter, customer: dict[str, Any]) -> dict[str, Any]:
    response = fc.post("/api/account", {"event": "account.lookup", "customer": customer})
    assert response.status_code == 200
    return response.get_json()


def test_a_returning_buyer_is_active_with_a_stable_pseudonymous_account_id(fc):
    fc.cart("ref-jane", widget(1), recipient=RECIPIENT_CA)  # jane@example.com, +1 415 555 0100
    by_email = account(fc, {"email": " JANE@Example.COM "})
    assert by_email["status"] == "active"
    assert by_email["account_id"].startswith("acct_")
    assert "jane" not in by_email["account_id"]
    assert account(fc, {"phone": "+1 (415) 555-0100"}) == by_email  # the same buyer, one id
    assert account(fc, {"email": "jane@example.com", "phone": "000"}) == by_email
    assert account(fc, {"email": "joe@example.com"}) == {"success": True, "status": "not_found"}
    assert account(fc, {"phone": "+1 415 555 0199"})["status"] == "not_found"
    fc.cart("ref-jane-2", widget(2), recipient=RECIPIENT_CA)  # a second visit: same id
    assert account(fc, {"email": "jane@example.com"}) == by_email


def test_account_ids_are_keyed_by_the_store_secret(make_app):
    ids = []
    for secret in ("secret-one", "secret-two"):
        app = make_app(
            config={"forter": {"bearer": True, "hmac": False}},
            env={"FORTER_WEBHOOK_SECRET": secret},
        )
        fc = Forter(app.test_client(), secret)
        fc.cart(f"ref-{secret}", widget(1), recipient=RECIPIENT_CA)
        ids.append(account(fc, {"email": "jane@example.com"})["account_id"])
    assert ids[0] != ids[1]


def test_a_buyer_of_an_acp_session_is_active_too(forter_app, fc):
    from tests.conftest import AcpClient, cart

    acp = AcpClient(forter_app.test_client())
    acp.create(
        cart(
            ("widget", 1),
            buyer={
                "email": "Ann@Example.com",
                "first_name": "Ann",
                "phone_number": "+44 20 7946 0000",
            },
        )
    )
    assert account(fc, {"email": "ann@example.com"})["status"] == "active"
    assert account(fc, {"phone": "442079460000"})["status"] == "active"


def test_a_buyer_first_named_at_acp_complete_is_active(forter_app, fc):
    from tests.conftest import ADDRESS_CA, AcpClient, cart, payment

    acp = AcpClient(forter_app.test_client())
    body = cart(("widget", 1), address=ADDRESS_CA)
    del body["buyer"]
    session = acp.create(body).get_json()
    assert account(fc, {"email": "bo@example.com"})["status"] == "not_found"
    done = acp.post(
        f"/checkout_sessions/{session['id']}/complete",
        {**payment(), "buyer": {"email": "Bo@Example.com", "first_name": "Bo"}},
    )
    assert done.get_json()["status"] == "completed"
    assert account(fc, {"email": "bo@example.com"})["status"] == "active"


def test_blocked_wins_over_active(make_app):
    app = make_app(
        config={"blockedBuyers": ["jane@example.com"]}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )
    fc = Forter(app.test_client())
    fc.cart("ref-blocked", widget(1), recipient=RECIPIENT_CA)
    assert account(fc, {"email": "jane@example.com"}) == {"success": True, "status": "blocked"}
    assert (
        account(fc, {"phone": "+1 415 555 0100", "email": "JANE@example.com"})["status"]
        == "blocked"
    )


def test_a_purged_buyer_is_forgotten(fc, forter_app, monkeypatch):
    from datetime import timedelta

    from shop import clock
    from shop.checkout import retention

    fc.cart("ref-forget", widget(1), recipient=RECIPIENT_CA)
    assert account(fc, {"email": "jane@example.com"})["status"] == "active"
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(days=2))
    with forter_app.app_context():
        assert retention.purge(forter_app.extensions["shop"]).sessions == 1
    assert account(fc, {"email": "jane@example.com"})["status"] == "not_found"


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe",
        b'{"customer": "jane@example.com"}',
        b'{"reference_id": 5, "account": []}',
        b'{"reference_id": "' + b"r" * 300 + b'"}',
    ],
)
def test_the_account_lookup_is_non_fatal(fc, raw):
    response = fc.post("/api/account", None, raw=raw)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "status": "not_found"}


def test_the_account_lookup_still_needs_auth(forter_app):
    response = forter_app.test_client().post(
        "/api/account", data=b"{not json", content_type="application/json"
    )
    assert response.status_code == 401
    assert response.get_json()["error_code"] == "unauthorized"


def test_the_lookup_uses_an_index(forter_app):
    from sqlalchemy import select

    from shop.storage.models import CheckoutSession

    with forter_app.app_context():
        for column in (CheckoutSession.buyer_email, CheckoutSession.buyer_phone):
            sql = str(
                select(CheckoutSession.id)
                .where(column == "x")
                .compile(db.engine, compile_kwargs={"literal_binds": True})
            )
            plan = db.session.execute(db.text(f"EXPLAIN QUERY PLAN {sql}")).all()
            assert any(
                f"USING INDEX ix_checkout_sessions_{column.key}" in str(row[-1])
                or f"USING COVERING INDEX ix_checkout_sessions_{column.key}" in str(row[-1])
                for row in plan
            ), plan


def test_an_older_database_gains_the_buyer_columns(make_app, shop_files):
    """A database created before buyer_email/buyer_phone existed is upgraded at start-up."""
    from sqlalchemy import Column, MetaData, Table, create_engine, inspect

    engine = create_engine(f"sqlite:///{shop_files['db']}")
    old = MetaData()
    Table(
        "checkout_sessions",
        old,
        *[
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in CheckoutSession.__table__.columns
            if c.name not in ("buyer_email", "buyer_phone")
        ],
    )
    old.create_all(engine)
    engine.dispose()

    app = make_app(env={"FORTER_WEBHOOK_SECRET": SECRET})
    with app.app_context():
        inspector = inspect(db.engine)
        names = {c["name"] for c in inspector.get_columns("checkout_sessions")}
        indexes = {i["name"] for i in inspector.get_indexes("checkout_sessions")}
    assert {"buyer_email", "buyer_phone"} <= names
    assert {"ix_checkout_sessions_buyer_email", "ix_checkout_sessions_buyer_phone"} <= indexes
    fc = Forter(app.test_client())
    fc.cart("ref-upgraded", widget(1), recipient=RECIPIENT_CA)
    assert account(fc, {"email": "jane@example.com"})["status"] == "active"
    make_app(env={"FORTER_WEBHOOK_SECRET": SECRET})  # a second start finds nothing to add


# ---------------------------------------------------------------- auth


def _post(app: Any, headers: dict[str, str], body: bytes | None = None) -> Any:
    data = (
        body
        if body is not None
        else json.dumps(
            {"event": "cart.created", "reference_id": "ref-auth", "items": widget(1)}
        ).encode()
    )
    return app.test_client().post(
        "/api/cart", data=data, content_type="application/json", headers=headers
    )


def test_bearer_auth(make_app):
    app = make_app(
        config={"forter": {"bearer": True, "hmac": False}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )
    assert _post(app, {}).status_code == 401
    wrong = _post(app, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["error_code"] == "unauthorized"
    assert _post(app, {"Authorization": f"Basic {SECRET}"}).status_code == 401
    assert _post(app, {"Authorization": f"Bearer {SECRET}"}).status_code == 200


def test_hmac_auth(make_app):
    app = make_app(
        config={"forter": {"bearer": False, "hmac": True}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )
    body = json.dumps(
        {"event": "cart.created", "reference_id": "ref-h", "items": widget(1)}
    ).encode()
    missing = _post(app, {}, body)
    assert missing.status_code == 401
    assert HEADER in missing.get_json()["error_message"]
    assert _post(app, {HEADER: sign(body, "other-secret")}, body).status_code == 401
    assert (
        _post(
            app, {HEADER: sign(body)}, body.replace(b'"quantity": 1', b'"quantity": 9')
        ).status_code
        == 401
    )
    assert _post(app, {HEADER: sign(body).removeprefix("hmac-sha256=")}, body).status_code == 401
    assert _post(app, {HEADER: sign(body)}, body).status_code == 200
    upper = "HMAC-SHA256=" + sign(body).removeprefix("hmac-sha256=").upper()
    assert _post(app, {HEADER: upper}, body).status_code == 200


def test_both_required_when_both_configured(forter_app):
    body = json.dumps(
        {"event": "cart.created", "reference_id": "ref-b", "items": widget(1)}
    ).encode()
    assert _post(forter_app, {HEADER: sign(body)}, body).status_code == 401
    assert _post(forter_app, {"Authorization": f"Bearer {SECRET}"}, body).status_code == 401
    assert (
        _post(
            forter_app, {"Authorization": f"Bearer {SECRET}", HEADER: sign(body)}, body
        ).status_code
        == 200
    )


def test_header_name_follows_the_store_name(make_app):
    app = make_app(
        config={"storeName": "Harbor Goods", "forter": {"bearer": False, "hmac": True}},
        env={"FORTER_WEBHOOK_SECRET": SECRET},
    )
    body = b'{"event": "cart.created", "reference_id": "r", "items": [{"product_id": "widget"}]}'
    assert _post(app, {HEADER: sign(body)}, body).status_code == 401
    assert _post(app, {"harbor-goods-signature": sign(body)}, body).status_code == 200


def test_demo_mode_secret_is_demo_and_a_live_store_without_secret_refuses(make_app):
    demo = make_app()
    assert _post(demo, {"Authorization": "Bearer demo"}).status_code == 200
    live = make_app(env={"SHOP_API_KEYS": "openai:tok"})
    refused = _post(live, {"Authorization": "Bearer demo"})
    assert refused.status_code == 503
    assert "FORTER_WEBHOOK_SECRET" in refused.get_json()["error_message"]


def test_concurrent_cart_events_for_one_reference_open_one_session(fc, forter_app):
    from concurrent.futures import ThreadPoolExecutor

    def send(quantity: int) -> int:
        return (
            Forter(forter_app.test_client())
            .cart("ref-race", widget(quantity), recipient=RECIPIENT_CA)
            .status_code
        )

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(1, 9)))
    assert statuses == [200] * 8
    with forter_app.app_context():
        assert db.session.query(CheckoutSession).count() == 1


def test_losing_the_reference_race_updates_the_winner(fc, forter_app, monkeypatch):
    from shop.checkout import forter as forter_refs

    fc.cart("ref-lost", widget(1), recipient=RECIPIENT_CA)
    real_find = forter_refs._find
    calls: list[str] = []

    def stale_find(reference_id: str) -> Any:
        calls.append(reference_id)
        # the first lookup misses the row a concurrent request bound a moment ago
        return None if len(calls) == 1 else real_find(reference_id)

    monkeypatch.setattr(forter_refs, "_find", stale_find)
    body = decimals(fc.cart("ref-lost", widget(3), event="cart.updated"))
    assert body["items"][0]["quantity"] == 3
    assert len(calls) == 2
    with forter_app.app_context():
        assert db.session.query(CheckoutSession).count() == 1


def test_pending_payment_is_not_charged_again_on_retry(fc, forter_app):
    cart = decimals(fc.cart("ref-pending", widget(1), recipient=RECIPIENT_CA))
    for _ in range(2):
        response = fc.order("ref-pending", cart["totals"]["total"], token="tok_pending")
        assert response.status_code == 409
        assert response.get_json()["error_code"] == "payment_pending"
        assert response.headers["Retry-After"]
    assert live_stock(forter_app, "widget") == 99  # reserved once, for the one charge


def test_an_expired_cart_is_replaced_under_the_same_reference(fc, forter_app, monkeypatch):
    from datetime import timedelta

    from shop import clock

    fc.cart("ref-old", widget(1), recipient=RECIPIENT_CA)
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(minutes=31))
    gone = fc.order("ref-old", 47.16)
    assert gone.status_code == 409
    assert gone.get_json()["error_code"] == "invalid_request"
    body = decimals(fc.cart("ref-old", widget(2), event="cart.updated", recipient=RECIPIENT_CA))
    assert body["items"][0]["quantity"] == 2
    assert fc.order("ref-old", body["totals"]["total"]).status_code == 200


# ---------------------------------------------------------------- shipping, tax, currency


def test_an_unknown_shipping_id_is_refused_and_changes_nothing(fc, forter_app, monkeypatch):
    charges = count_charges(forter_app, monkeypatch)
    bad = {**RECIPIENT_CA, "shipping_id": "overnight"}
    refused = fc.cart("ref-ship", widget(1), recipient=bad)
    assert refused.status_code == 400
    answer = refused.get_json()
    assert answer["error_code"] == "invalid_request"
    assert "recipient.shipping_id" in answer["error_message"]
    with forter_app.app_context():
        assert db.session.query(CheckoutSession).count() == 0  # no cart was opened

    before = decimals(fc.cart("ref-ship", widget(1), recipient=RECIPIENT_CA))
    assert before["selected_shipping_id"] == "express"
    again = fc.cart("ref-ship", widget(1), event="cart.updated", recipient=bad)
    assert again.status_code == 400
    after = decimals(fc.cart("ref-ship", widget(1), event="cart.updated"))
    assert after["selected_shipping_id"] == "express"
    assert after["totals"] == before["totals"]

    # digital is an option of digital-only carts, not of this one
    digital = fc.order(
        "ref-ship", before["totals"]["total"], recipient={**RECIPIENT_CA, "shipping_id": "digital"}
    )
    assert digital.status_code == 400
    assert digital.get_json()["error_code"] == "invalid_request"
    assert charges == []
    assert live_stock(forter_app, "widget") == 100


def test_toronto_pays_no_california_tax(fc):
    toronto = {
        **RECIPIENT_CA,
        "address": {
            "address1": "100 Queen St W",
            "city": "Toronto",
            "region_id": "ON",
            "postal_code": "M5H 2N2",
            "country_id": "CA",
        },
    }
    body = decimals(
        fc.cart("ref-toronto", widget(1), country_id="CA", region_id="ON", recipient=toronto)
    )
    assert body["totals"]["tax"] == 0
    assert body["totals"]["total"] == Decimal("44.99")  # 29.99 + 15.00 express


@pytest.fixture
def jpy(make_app) -> Forter:
    app = make_app(
        config={"currency": "jpy", "forter": {"bearer": True, "hmac": True}},
        env={"FORTER_WEBHOOK_SECRET": SECRET},
    )
    return Forter(app.test_client())


def test_a_jpy_store_speaks_whole_yen(jpy):
    body = decimals(jpy.cart("ref-yen", widget(2), currency_id="JPY", recipient=RECIPIENT_CA))
    assert body["currency_id"] == "JPY"
    # ¥2999 x 2 = ¥5998; CA 7.25% = 434.855 -> ¥435; express ¥1500
    assert body["items"][0]["price"] == 2999 and body["items"][0]["subtotal"] == 5998
    assert body["totals"] == {
        "subtotal": 5998,
        "discount": 0,
        "shipping": 1500,
        "tax": 435,
        "total": 7933,
    }
    assert all(isinstance(v, int) for v in body["totals"].values())
    assert (
        b"."
        not in json.dumps(
            json.loads(
                jpy.cart("ref-yen", widget(2), event="cart.updated", currency_id="JPY").data
            )["totals"]
        ).encode()
    )

    for sub_yen in (7933.5, "7933.01", 0.5):
        refused = jpy.order("ref-yen", sub_yen, currency_id="JPY")
        assert refused.status_code == 400
        assert refused.get_json()["error_code"] == "invalid_request"
        assert "JPY" in refused.get_json()["error_message"]
    paid = jpy.order("ref-yen", 7933, currency_id="JPY")
    assert paid.status_code == 200, paid.get_json()
    assert paid.get_json()["success"] is True


def test_a_jpy_store_refuses_a_usd_cart(jpy):
    response = jpy.cart("ref-usd", widget(1), currency_id="USD")
    assert response.status_code == 400
    assert response.get_json()["error_code"] == "invalid_request"
