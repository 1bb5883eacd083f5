"""shop.orders: payload and ACP event shapes, and the sinks against a real loopback receiver."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from shop import clock
from shop.config.settings import load_settings
from shop.errors import ConfigError
from shop.orders.payload import build_acp_order_event, build_order_payload
from shop.orders.sinks import AcpEventSink, DeliveryError, LogSink, WebhookSink, build_sink
from tests.order_schemas import BUNDLE_ORDER, MERCHANT_SIGNATURE, PAYLOAD_SCHEMA, WEBHOOK_EVENT

# The receiver module is a plugin (not imported here) so pytest can rewrite its asserts.

ROOT = Path(__file__).resolve().parents[1]
ADDRESS = {
    "name": "Jane Doe",
    "line_one": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "country": "US",
    "postal_code": "94105",
}


def physical_order() -> dict[str, Any]:
    """Two widgets shipped to California: tax on the goods, flat-rate shipping."""
    return build_order_payload(
        order_id="order_cs_phys",
        session_id="cs_phys",
        permalink_url="https://store.test/orders/order_cs_phys",
        buyer={"first_name": "Jane", "email": "jane@example.com"},
        currency="usd",
        line_items=[
            {
                "id": "li_1",
                "item_id": "widget",
                "title": "Premium Widget — Café",
                "quantity": 2,
                "unit_amount": 2999,
                "tax": 435,
                "total": 6433,
            }
        ],
        totals=[
            {"type": "items_base_amount", "display_text": "Item(s) total", "amount": 5998},
            {"type": "subtotal", "display_text": "Subtotal", "amount": 5998},
            {"type": "fulfillment", "display_text": "Standard", "amount": 500},
            {"type": "tax", "display_text": "Tax", "amount": 435},
            {"type": "total", "display_text": "Total", "amount": 6933},
        ],
        fulfillment={
            "option": {"id": "standard", "title": "Standard", "amount": 500},
            "address": ADDRESS,
        },
        payment={"provider": "stripe", "reference": "pi_3Phys"},
    )


def digital_variant_order() -> dict[str, Any]:
    """A team licence of the e-book (a variant of a digital product): no tax, no shipping."""
    return build_order_payload(
        order_id="order_cs_dig",
        session_id="cs_dig",
        permalink_url="https://store.test/orders/order_cs_dig",
        buyer={"email": "sam@example.com"},
        currency="USD",
        line_items=[
            {
                "id": "li_1",
                "item_id": "ebook-team",
                "title": "E-Book (team)",
                "quantity": 1,
                "unit_amount": 6000,
                "tax": 0,
                "total": 6000,
            }
        ],
        totals=[
            {"type": "subtotal", "display_text": "Subtotal", "amount": 6000},
            {"type": "total", "display_text": "Total", "amount": 6000},
        ],
        fulfillment=None,
        payment={"provider": "razorpay", "reference": "pay_Dig"},
    )


ORDERS = pytest.mark.parametrize(
    "make_order", [physical_order, digital_variant_order], ids=["physical", "digital-variant"]
)


# --- payload shapes ---------------------------------------------------------------------------


@ORDERS
def test_payload_validates_against_the_published_schema(make_order):
    order = make_order()
    PAYLOAD_SCHEMA.validate(order)
    assert order["order"]["id"] == "order_" + order["order"]["checkout_session_id"]
    assert order["currency"] == "usd"


def test_physical_payload_has_tax_shipping_and_address():
    order = physical_order()
    assert {t["type"]: t["amount"] for t in order["totals"]}["tax"] == 435
    assert order["fulfillment"] == {
        "option": {"id": "standard", "title": "Standard", "amount": 500},
        "address": ADDRESS,
    }


def test_digital_variant_payload_names_the_variant_and_ships_nothing():
    order = digital_variant_order()
    assert order["line_items"][0]["item_id"] == "ebook-team"
    assert order["fulfillment"] is None
    assert "tax" not in {t["type"] for t in order["totals"]}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("line_items", 0, "unit_amount"), 29.99),
        (("totals", -1, "amount"), "69.33"),
        (("order", "id"), "cs_phys"),
        (("currency",), "USD"),
        (("fulfillment", "address"), {}),
    ],
    ids=["float-amount", "text-amount", "order-id-prefix", "upper-currency", "empty-address"],
)
def test_schema_rejects_what_a_merchant_could_not_trust(path, value):
    order = physical_order()
    target = order
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not PAYLOAD_SCHEMA.is_valid(order)


def test_acp_event_leaves_out_a_partial_destination():
    partial = physical_order()
    partial["fulfillment"]["address"] = {
        "line_one": "1 Market St",
        "city": "San Francisco",
        "country": "US",
    }  # e.g. from Forter, no name
    PAYLOAD_SCHEMA.validate(partial)
    event = build_acp_order_event("order_create", partial, "confirmed")
    WEBHOOK_EVENT.validate(event)
    assert "destination" not in event["data"]["fulfillments"][0]
    full = build_acp_order_event("order_create", physical_order(), "confirmed")
    assert full["data"]["fulfillments"][0]["destination"] == ADDRESS


@ORDERS
@pytest.mark.parametrize(
    ("event_type", "status"), [("order_create", "confirmed"), ("order_update", "manual_review")]
)
def test_acp_event_validates_against_the_webhook_openapi(make_order, event_type, status):
    event = build_acp_order_event(event_type, make_order(), status)
    WEBHOOK_EVENT.validate(event)
    BUNDLE_ORDER.validate(event["data"])
    assert event["type"] == event_type and event["data"]["status"] == status


@ORDERS
def test_canceled_acp_event_carries_the_refund_and_validates(make_order):
    order = make_order()
    paid = order["totals"][-1]["amount"]
    refund = {
        "id": "adj_refund_1",
        "amount": paid,
        "occurred_at": "2026-05-01T10:00:00Z",
        "reason": "refunded",
    }
    event = build_acp_order_event("order_update", order, "canceled", refund=refund)
    WEBHOOK_EVENT.validate(event)
    BUNDLE_ORDER.validate(event["data"])
    data = event["data"]
    assert data["status"] == "canceled" and data["fulfillments"][0]["status"] == "canceled"
    assert [(li["quantity"]["current"], li["status"]) for li in data["line_items"]] == [
        (0, "removed")
    ]
    assert data["adjustments"] == [
        {
            "id": "adj_refund_1",
            "type": "refund",
            "occurred_at": "2026-05-01T10:00:00Z",
            "status": "completed",
            "amount": paid,
            "currency": "usd",
            "reason": "refunded",
        }
    ]
    assert data["totals"][-1] == {
        "type": "amount_refunded",
        "display_text": "Refunded",
        "amount": paid,
    }
    assert order["totals"][-1]["type"] == "total"  # the merchant payload is left as it was


def test_canceled_payload_needs_its_cancel_object():
    canceled = {**physical_order(), "event": "order.canceled"}
    assert not PAYLOAD_SCHEMA.is_valid(canceled)
    canceled["cancel"] = {
        "reason": "refunded",
        "payment_reference": "pi_3Phys",
        "amount_refunded": 6933,
    }
    PAYLOAD_SCHEMA.validate(canceled)
    canceled["cancel"]["amount_refunded"] = 69.33
    assert not PAYLOAD_SCHEMA.is_valid(canceled)


def test_acp_event_type_is_checked():
    with pytest.raises(ValueError):
        build_acp_order_event("order_created", physical_order(), "confirmed")


# --- WebhookSink against the real receiver ----------------------------------------------------


@ORDERS
def test_signed_delivery_verifies_like_a_merchant_would(order_receiver, make_order):
    order = make_order()
    WebhookSink(order_receiver.url, order_receiver.secret).deliver(order)
    [received] = order_receiver.deliveries
    assert received.verified
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Idempotency-Key"] == order["order"]["id"]
    assert received.json() == order
    PAYLOAD_SCHEMA.validate(received.json())


def test_redelivery_is_deduped_by_the_receiver(order_receiver):
    sink = WebhookSink(order_receiver.url, order_receiver.secret)
    sink.deliver(physical_order())
    sink.deliver(physical_order())  # a retry: same order id, same bytes
    assert len(order_receiver.requests) == 2
    assert len(order_receiver.deliveries) == 1
    assert order_receiver.requests[0].raw == order_receiver.requests[1].raw


def test_wrong_secret_is_rejected_by_the_receiver(order_receiver):
    with pytest.raises(DeliveryError) as caught:
        WebhookSink(order_receiver.url, "not-the-secret").deliver(physical_order())
    assert caught.value.status == 401
    assert order_receiver.deliveries == []
    assert "not-the-secret" not in str(caught.value)


def test_no_secret_sends_no_signature_header(make_order_receiver):
    receiver = make_order_receiver(secret=None)
    WebhookSink(receiver.url).deliver(digital_variant_order())
    [received] = receiver.deliveries
    assert "Signature" not in received.headers
    assert received.headers["Idempotency-Key"] == "order_cs_dig"


def test_receiver_500_is_a_delivery_error_without_secrets(order_receiver):
    order_receiver.mode = "error"
    sink = WebhookSink(order_receiver.url + "?token=query-credential", order_receiver.secret)
    with pytest.raises(DeliveryError) as caught:
        sink.deliver(physical_order())
    message = str(caught.value)
    assert caught.value.status == 500
    assert "500" in message and "\n" not in message
    assert order_receiver.secret not in message and "query-credential" not in message
    assert order_receiver.deliveries == []


def test_hanging_receiver_times_out_quickly(order_receiver):
    order_receiver.mode, order_receiver.hang_seconds = "hang", 10
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        sink = WebhookSink(order_receiver.url, order_receiver.secret, timeout=0.5)
        sink.deliver(physical_order())
    assert time.monotonic() - started < 3
    assert caught.value.status is None
    assert "0.5s" in str(caught.value)


def test_receiver_down_is_a_delivery_error_and_a_later_retry_delivers(order_receiver):
    sink = WebhookSink(order_receiver.url, order_receiver.secret, timeout=2)
    order_receiver.down()
    with pytest.raises(DeliveryError) as caught:
        sink.deliver(physical_order())
    assert "could not reach" in str(caught.value)
    order_receiver.start()  # back up on the same port
    sink.deliver(physical_order())
    assert [o["order"]["id"] for o in order_receiver.orders] == ["order_cs_phys"]


def test_empty_secret_or_bad_url_is_refused():
    with pytest.raises(ValueError):
        WebhookSink("https://merchant.test/orders", "")
    with pytest.raises(ValueError):
        WebhookSink("merchant.test/orders")


# --- LogSink and build_sink -------------------------------------------------------------------


def test_log_sink_warns_loudly_per_order(caplog):
    with caplog.at_level(logging.WARNING, logger="shop.test"):
        LogSink(logging.getLogger("shop.test")).deliver(physical_order())
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "order_cs_phys" in message and "cs_phys" in message and "NOT delivered" in message
    assert "orderWebhookUrl" in message and "\n" not in message
    assert json.loads(message.split("order=", 1)[1]) == physical_order()  # nothing is lost
    assert LogSink.drops_orders  # the outbox records its orders as dropped, not delivered


def _settings(config: dict[str, Any], **env: str):
    return load_settings(
        {"SHOP_CONFIG": str(ROOT / "tests" / "data" / "config.json"), **env},
        {"orderWebhookUrl": None, **config},
    )


def test_build_sink_without_url_is_a_log_sink_and_warns_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="shop.test"):
        sink = build_sink(_settings({}), logging.getLogger("shop.test"))
    assert isinstance(sink, LogSink)
    assert any(
        "orderWebhookUrl" in r.getMessage() and "LOST" in r.getMessage() for r in caplog.records
    )


def test_build_sink_with_url_signs_with_the_environment_secret(order_receiver, caplog):
    settings = _settings(
        {"orderWebhookUrl": order_receiver.url}, ORDER_WEBHOOK_SECRET=order_receiver.secret
    )
    with caplog.at_level(logging.WARNING, logger="shop.test"):
        sink = build_sink(settings, logging.getLogger("shop.test"))
    assert isinstance(sink, WebhookSink)
    assert caplog.records == []
    assert order_receiver.secret not in repr(sink)
    sink.deliver(physical_order())
    assert order_receiver.deliveries[0].verified


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 10.0), ("", 10.0), ("2.5", 2.5), ("30", 30.0)]
)
def test_webhook_timeout_comes_from_the_environment(order_receiver, value, seconds):
    env = {} if value is None else {"ORDER_WEBHOOK_TIMEOUT": value}
    sink = build_sink(
        _settings({"orderWebhookUrl": order_receiver.url}, **env), logging.getLogger("shop.test")
    )
    assert sink.timeout == seconds


@pytest.mark.parametrize("value", ["0", "-1", "31", "ten", "nan", "inf"])
def test_webhook_timeout_out_of_range_is_a_config_error(value):
    with pytest.raises(ConfigError, match="ORDER_WEBHOOK_TIMEOUT"):
        build_sink(
            _settings(
                {"orderWebhookUrl": "https://merchant.test/orders"}, ORDER_WEBHOOK_TIMEOUT=value
            ),
            logging.getLogger("shop.test"),
        )


def test_idempotency_key_is_unique_per_order_and_event(order_receiver):
    order = physical_order()
    flagged = {
        **order,
        "event": "order.flagged",
        "flag": {"reason": "dispute", "payment_reference": "pi_3Phys"},
    }
    sink = WebhookSink(order_receiver.url, order_receiver.secret)
    sink.deliver(order)
    sink.deliver(flagged)
    assert [r.headers["Idempotency-Key"] for r in order_receiver.deliveries] == [
        "order_cs_phys",
        "order_cs_phys:order.flagged",
    ]


def test_build_sink_rejects_a_url_that_is_not_http():
    with pytest.raises(ConfigError, match="orderWebhookUrl"):
        build_sink(
            _settings({"orderWebhookUrl": "ftp://merchant.test/orders"}),
            logging.getLogger("shop.test"),
        )


# --- AcpEventSink -----------------------------------------------------------------------------


@ORDERS
def test_acp_event_is_signed_and_valid(order_receiver, make_order):
    event = build_acp_order_event("order_create", make_order(), "confirmed")
    AcpEventSink(order_receiver.acp_url, order_receiver.acp_secret).deliver(event)
    [received] = order_receiver.deliveries
    assert received.verified
    assert MERCHANT_SIGNATURE.fullmatch(received.headers["Merchant-Signature"])
    assert received.headers["Content-Type"] == "application/json"
    WEBHOOK_EVENT.validate(received.json())
    assert received.json() == event


def test_acp_sink_wraps_a_merchant_payload_as_order_create(order_receiver):
    AcpEventSink(order_receiver.acp_url, order_receiver.acp_secret).deliver(physical_order())
    [received] = order_receiver.deliveries
    WEBHOOK_EVENT.validate(received.json())
    assert received.json()["type"] == "order_create"


def test_stale_merchant_signature_is_rejected(order_receiver, monkeypatch):
    monkeypatch.setattr(clock, "epoch", lambda: int(time.time()) - 3600)
    with pytest.raises(DeliveryError) as caught:
        AcpEventSink(order_receiver.acp_url, order_receiver.acp_secret).deliver(
            build_acp_order_event("order_create", physical_order(), "confirmed")
        )
    assert caught.value.status == 401
    assert order_receiver.acp_secret not in str(caught.value)


def test_receiver_fixture_is_isolated(order_receiver):
    assert order_receiver.deliveries == [] and order_receiver.url.startswith("http://127.0.0.1:")


# --- the receiver in docs/receiving-orders.md works as printed ---------------------------------


@pytest.fixture
def docs_receiver(tmp_path, monkeypatch):
    """Run the Flask receiver from docs/receiving-orders.md on loopback; yield (url, db)."""
    import importlib.util
    import sqlite3
    import threading

    from werkzeug.serving import make_server

    text = (ROOT / "docs" / "receiving-orders.md").read_text()
    source = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "docs_receiver.py").write_text(source)
    monkeypatch.setenv("ORDER_WEBHOOK_SECRET", "docs-secret")
    monkeypatch.setenv("ORDERS_DB", str(tmp_path / "orders.sqlite3"))
    spec = importlib.util.spec_from_file_location("docs_receiver", tmp_path / "docs_receiver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = make_server("127.0.0.1", 0, module.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def rows() -> list[tuple[str, str]]:
        with sqlite3.connect(tmp_path / "orders.sqlite3") as conn:
            found = conn.execute("SELECT order_id, event FROM orders").fetchall()
        conn.close()
        return found

    yield f"http://127.0.0.1:{server.server_port}/hooks/orders", rows
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_documented_receiver_verifies_dedupes_and_rejects_forgeries(docs_receiver):
    url, rows = docs_receiver
    sink = WebhookSink(url, "docs-secret")
    sink.deliver(physical_order())
    sink.deliver(physical_order())  # a retry: 200 again, no second row
    with pytest.raises(DeliveryError) as caught:
        WebhookSink(url, "forged").deliver(digital_variant_order())
    assert caught.value.status == 401
    with pytest.raises(DeliveryError):
        WebhookSink(url).deliver(digital_variant_order())  # unsigned
    assert rows() == [("order_cs_phys", "order.created")]
