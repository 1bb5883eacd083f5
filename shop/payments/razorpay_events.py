"""Razorpay's signed webhooks: verify `X-Razorpay-Signature` on the raw body, reduce the event.

The signature is a hex HMAC-SHA256 of the raw body with RAZORPAY_WEBHOOK_SECRET; duplicates
are told apart by what it covers (_signed_id), not by the unsigned X-Razorpay-Event-Id. A body that
fails it is a WebhookSignatureError; a verified body that is not an event we can read is a
WebhookPayloadError. The checkout session is read from OUR order's notes (fetched when the
event does not carry the order): payment notes come from the buyer's browser.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from shop.money import from_provider_units
from shop.payments import EventKind, PaymentEvent, WebhookPayloadError, WebhookSignatureError
from shop.payments.declines import decline
from shop.security import SignatureError, verify_hex

EVENT_KINDS = {
    "payment.captured": EventKind.PAID,
    "order.paid": EventKind.PAID,
    "payment.failed": EventKind.FAILED,
    "payment.dispute.created": EventKind.DISPUTED,
    "refund.processed": EventKind.REFUNDED,
}


def parse_event(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    fetch_order: Callable[[str], Mapping[str, Any]],
) -> PaymentEvent:
    """Verify a Razorpay webhook, then reduce it (fetching its order when it names none)."""
    if not secret:
        raise WebhookSignatureError(
            "RAZORPAY_WEBHOOK_SECRET is not set, so no Razorpay event can be verified"
        )
    try:
        verify_hex(secret, raw_body, header(headers, "X-Razorpay-Signature"))
    except SignatureError as exc:
        raise WebhookSignatureError(f"X-Razorpay-Signature did not verify: {exc}") from None
    try:
        event = json.loads(raw_body)
        event_type = str(event["event"])
        payload = event.get("payload") or {}
        payment = _entity(payload, "payment")
        order = _entity(payload, "order")
        dispute = _entity(payload, "dispute")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WebhookPayloadError(
            "the Razorpay event verified but is not a JSON object with 'event' and 'payload' "
            f"entities ({type(exc).__name__}: {exc})"
        ) from None
    event_id = _signed_id(event_type, payload, raw_body)
    kind = EVENT_KINDS.get(event_type, EventKind.IGNORED)
    if kind == EventKind.DISPUTED:
        payment = payment or {"id": dispute.get("payment_id")}
    if kind != EventKind.IGNORED and not order and payment.get("order_id"):
        order = fetch_order(str(payment["order_id"]))
    entity = payment or order
    amount = entity.get("amount")
    if kind == EventKind.REFUNDED:  # the payment's amount_refunded: all its refunds so far
        amount = payment.get("amount_refunded")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise WebhookPayloadError(
            f"the Razorpay event verified but its amount {amount!r} is not an integer in paise"
        )
    if amount is not None and entity.get("currency"):  # Razorpay's units -> ours
        amount = from_provider_units(amount, str(entity["currency"]), "razorpay")
    failure = None
    if kind == EventKind.FAILED:
        reason = str(payment.get("error_reason") or "").lower() or None
        failure = decline("payment_declined", reason, message=payment.get("error_description"))
    return PaymentEvent(
        id=event_id,
        type=event_type,
        kind=kind,
        session_id=(order.get("notes") or {}).get("checkout_session_id") or None,
        reference=payment.get("id") or order.get("id"),
        amount=amount,
        currency=str(entity["currency"]).lower() if entity.get("currency") else None,
        decline_code=failure.decline_code if failure else None,
        message=failure.message if failure else None,
    )


def _signed_id(event_type: str, payload: Mapping[str, Any], raw_body: bytes) -> str:
    """Name the event by what Razorpay signed: its type and each entity's id and state.

    X-Razorpay-Event-Id is outside the signature, so a replayed genuine body with a new
    header must still be the same event; two deliveries of one event carry the same
    entities in the same states. A body without entity ids falls back to its digest.
    """
    parts = [event_type]
    for name in ("payment", "refund", "dispute", "order"):
        try:
            entity = _entity(payload, name)
        except TypeError:
            continue
        if entity.get("id"):
            parts.append(f"{name}={entity['id']}:{entity.get('status', '')}")
    if len(parts) == 1:
        return "body_" + hashlib.sha256(raw_body).hexdigest()[:40]
    return "signed_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def _entity(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    entity = (payload.get(name) or {}).get("entity") or {}
    if not isinstance(entity, Mapping):
        raise TypeError(f"payload.{name}.entity is not an object")
    return entity


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header by name, case-insensitively even from a plain dict (tests, the CLI)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value
