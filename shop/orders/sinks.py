"""Orders out: the sinks that send the merchant's order and the ACP order events.

`OrderSink.deliver(order)` is the one hand-off. It raises on failure and never retries; the
delivery outbox (`shop.orders`) decides when to try again. Bodies are serialized once and the
bytes signed are the bytes sent, so a receiver can verify the signature on the raw body. The
HTTP sinks send over kept-alive connections, one set per destination (`transport`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from shop import clock, fast_json
from shop.config.settings import Settings
from shop.errors import ConfigError
from shop.orders.payload import build_acp_order_event
from shop.orders.transport import DeliveryError as DeliveryError
from shop.orders.transport import Transport, where
from shop.security import hmac_sha256_base64, sign_timestamped

DEFAULT_TIMEOUT = 10.0  # seconds; ORDER_WEBHOOK_TIMEOUT changes it
MAX_TIMEOUT = 30.0  # well inside the delivery lease (shop.orders.retry_schedule.LEASE_SECONDS)
_where = where


class OrderSink(Protocol):
    """Where completed orders go. `deliver` returns when the order is safely received.

    A sink that only logs (LogSink) sets `drops_orders = True`: the outbox then records its
    orders as `dropped`, so `orders failed` lists them and `orders replay` can send them once
    a real destination is configured; its `log_dropped(order, body)`, when it has one, is
    given the row's JSON text with the order, so the text is logged as stored.

    A sink may also have `send_stored(text, order_id, event)`: the outbox then hands it the
    message as its row holds it (JSON text), so it is not decoded only to be encoded again.
    One whose `quick` is true also takes `patience=` there (seconds to wait for the answer to
    begin; past it, it raises transport.AnswerPending): the worker that took the payment
    then sends the order itself, and leaves a slow answer to the hand-off thread.
    """

    def deliver(self, order: dict[str, Any]) -> None:
        """Hand one order over; raise (DeliveryError or anything) when it was not accepted."""
        ...


def _encode(body: Mapping[str, Any]) -> bytes:
    return fast_json.dumps_bytes(body)


def _check_url(url: str) -> None:
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ValueError("the order webhook URL must be an http:// or https:// URL")


class WebhookSink:
    """POST each order as JSON to the merchant, signed with `Signature` when a secret is set."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        _check_url(url)
        if secret == "":
            raise ValueError("ORDER_WEBHOOK_SECRET is empty; unset it or give it a value")
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._transport = Transport(url, timeout, session)

    def __repr__(self) -> str:
        return f"WebhookSink({_where(self.url)!r}, signed={self._secret is not None})"

    @property
    def quick(self) -> bool:
        """True while the receiver answers within transport.QUICK_SECONDS."""
        return self._transport.quick

    def deliver(self, order: dict[str, Any]) -> None:
        """Send one order; raise DeliveryError on a non-2xx answer, a timeout or no connection."""
        self._send(_encode(order), idempotency_key(order))

    def send_stored(
        self, text: str, order_id: str, event: str, patience: float | None = None
    ) -> None:
        """Send a message as the outbox row holds it (its JSON text); raise as `deliver` does."""
        self._send(text.encode(), _key(order_id, event), patience)

    def _send(self, body: bytes, key: str, patience: float | None = None) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._secret is not None:
            headers["Signature"] = hmac_sha256_base64(self._secret, body)
        self._transport.post(body, headers, patience)


def idempotency_key(order: Mapping[str, Any]) -> str:
    """Return the order id for order.created, `<order id>:<event>` for any later event.

    A receiver that dedupes on the header must not drop an order.flagged as a repeat.
    """
    return _key(str(order["order"]["id"]), order.get("event", "order.created"))


def _key(order_id: str, event: str) -> str:
    return order_id if event == "order.created" else f"{order_id}:{event}"


class LogSink:
    """No destination configured: log a loud warning per order and drop it."""

    drops_orders = True

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def deliver(self, order: dict[str, Any]) -> None:
        """Log that the order went nowhere, with the whole order so the log can rebuild it."""
        self.log_dropped(order, _encode(order).decode("utf-8"))

    def log_dropped(self, order: Mapping[str, Any], body: str) -> None:
        """Log `order` as dropped; `body` is its JSON as stored (what `orders replay` sends).

        The outbox passes the text it just wrote to the delivery row, so the order is not
        decoded and encoded again only to be logged.
        """
        info = order.get("order") or {}
        payment = order.get("payment") or {}
        total = next(
            (t.get("amount") for t in order.get("totals") or () if t.get("type") == "total"), None
        )
        self.logger.warning(
            "ORDER NOT DELIVERED: order %s for session %s was NOT delivered anywhere: set "
            "orderWebhookUrl in config.json (and ORDER_WEBHOOK_SECRET) to receive orders; "
            "payment %s %s, total %s %s. Dropped; `flask --app app orders replay %s` sends it "
            "once orderWebhookUrl is set. order=%s",
            info.get("id"),
            info.get("checkout_session_id"),
            payment.get("provider"),
            payment.get("reference"),
            total,
            order.get("currency"),
            info.get("checkout_session_id"),
            body,
        )


class AcpEventSink:
    """POST ACP order events to the agent platform, signed with `Merchant-Signature`."""

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        _check_url(url)
        if not secret:
            raise ValueError("ACP_WEBHOOK_SECRET is required to sign order events")
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._transport = Transport(url, timeout, session)

    def __repr__(self) -> str:
        return f"AcpEventSink({_where(self.url)!r})"

    @property
    def quick(self) -> bool:
        """True while the agent platform answers within transport.QUICK_SECONDS."""
        return self._transport.quick

    def deliver(self, order: dict[str, Any]) -> None:
        """Send one ACP event ({type, data}); a merchant payload is sent as order_create."""
        event = (
            order if "data" in order else build_acp_order_event("order_create", order, "confirmed")
        )
        self._send(_encode(event))

    def send_stored(
        self, text: str, order_id: str, event: str, patience: float | None = None
    ) -> None:
        """Send an ACP event as the outbox row holds it (the agent's rows hold whole events)."""
        self._send(text.encode(), patience)

    def _send(self, body: bytes, patience: float | None = None) -> None:
        headers = {
            "Content-Type": "application/json",
            "Merchant-Signature": sign_timestamped(self._secret, body, clock.epoch()),
            "Request-Id": f"req_{uuid.uuid4().hex}",
        }
        self._transport.post(body, headers, patience)


def build_sink(settings: Settings, logger: logging.Logger) -> OrderSink:
    """Choose the merchant sink from settings: WebhookSink with orderWebhookUrl, else LogSink."""
    url = settings.order_webhook_url
    if not url:
        logger.warning(
            "NO ORDER DESTINATION: orderWebhookUrl is not set in %s, so every paid "
            "order will only be logged and then LOST. Set orderWebhookUrl (and "
            "ORDER_WEBHOOK_SECRET) before taking real payments.",
            settings.config_path,
        )
        return LogSink(logger)
    try:
        _check_url(url)
    except ValueError:
        raise ConfigError(
            f"{settings.config_path}: field 'orderWebhookUrl' must be an http:// "
            "or https:// URL of your order receiver, e.g. "
            '"https://example.com/hooks/orders".'
        ) from None
    secret = settings.secret("ORDER_WEBHOOK_SECRET")
    if secret is None:
        logger.warning(
            "ORDER_WEBHOOK_SECRET is not set: orders to %s are sent UNSIGNED and "
            "your receiver cannot tell them from forgeries.",
            _where(url),
        )
    return WebhookSink(url, secret, webhook_timeout(settings))


def webhook_timeout(settings: Settings) -> float:
    """Return seconds to wait for the order receiver: ORDER_WEBHOOK_TIMEOUT, default 10."""
    raw = settings.env.get("ORDER_WEBHOOK_TIMEOUT") or ""
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(
            f"ORDER_WEBHOOK_TIMEOUT is {raw!r}; set it to the seconds shop waits "
            f"for your order receiver, more than 0 and at most {MAX_TIMEOUT:g} "
            f"(default {DEFAULT_TIMEOUT:g}), or unset it."
        )
    return seconds
