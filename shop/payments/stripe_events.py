"""Stripe's signed webhooks: verify `Stripe-Signature` on the raw body, reduce the event.

Verification is the stripe library's (`StripeClient.construct_event`, i.e.
`stripe.Webhook.construct_event` bound to our client) with a 300 s tolerance. A body that
fails it is a WebhookSignatureError; a body that passes it but is not an event we can read
is a WebhookPayloadError — counted apart, because the sender is genuine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import stripe

from shop.money import from_provider_units
from shop.payments import EventKind, PaymentEvent, WebhookPayloadError, WebhookSignatureError
from shop.payments.declines import decline

WEBHOOK_TOLERANCE_SECONDS = 300
EVENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAID,
    "payment_intent.payment_failed": EventKind.FAILED,
    "charge.dispute.created": EventKind.DISPUTED,
    "charge.refunded": EventKind.REFUNDED,
}


def parse_event(
    client: stripe.StripeClient, raw_body: bytes, headers: Mapping[str, str], secret: str | None
) -> PaymentEvent:
    """Verify a Stripe webhook with the stripe library, then reduce it to a PaymentEvent."""
    if not secret:
        raise WebhookSignatureError(
            "STRIPE_WEBHOOK_SECRET is not set, so no Stripe event can be verified"
        )
    signature = headers.get("Stripe-Signature")
    if not signature:
        raise WebhookSignatureError("the Stripe-Signature header is missing")
    try:
        # Decoded first: a non-UTF-8 body can never carry a valid signature, and every
        # ValueError after construct_event's check then means "genuine but unreadable".
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookSignatureError(
            "the body is not UTF-8 text, so it cannot be a signed Stripe event"
        ) from None
    try:
        client.construct_event(text, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(
            f"Stripe-Signature did not verify: {exc.user_message}"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _malformed(exc) from None
    try:
        event = json.loads(text)
        return _event(str(event["id"]), str(event["type"]), event["data"]["object"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _malformed(exc) from None


def _malformed(exc: Exception) -> WebhookPayloadError:
    return WebhookPayloadError(
        "the Stripe event verified but is not a JSON event object with id, type and "
        f"data.object ({type(exc).__name__}: {exc})"
    )


def _event(event_id: str, event_type: str, obj: Mapping[str, Any]) -> PaymentEvent:
    kind = EVENT_KINDS.get(event_type, EventKind.IGNORED)
    metadata, reference, amount = obj.get("metadata") or {}, obj.get("id"), obj.get("amount")
    decline_code = message = None
    if kind == EventKind.DISPUTED:  # data.object is the dispute; ids may be expanded objects
        intent, charge = obj.get("payment_intent"), obj.get("charge")
        metadata = {**_metadata(charge), **_metadata(intent)}
        reference = intent.get("id") if isinstance(intent, dict) else intent
        message = obj.get("reason")
    elif kind == EventKind.PAID:
        amount = obj.get("amount_received") or amount
    elif kind == EventKind.FAILED:
        error = obj.get("last_payment_error") or {}
        result = decline(error.get("code"), error.get("decline_code"))
        decline_code, message = result.decline_code, result.message
    elif kind == EventKind.REFUNDED:  # data.object is the charge; amount_refunded is cumulative
        intent = obj.get("payment_intent")
        metadata = {**metadata, **_metadata(intent)}
        reference = (intent.get("id") if isinstance(intent, dict) else intent) or reference
        amount = obj.get("amount_refunded")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise TypeError(f"amount {amount!r} is not an integer in minor units")
    if amount is not None and obj.get("currency"):  # Stripe's units (ISK: two-decimal) -> ours
        amount = from_provider_units(amount, str(obj["currency"]), "stripe")
    return PaymentEvent(
        id=event_id,
        type=event_type,
        kind=kind,
        session_id=metadata.get("checkout_session_id"),
        reference=reference,
        amount=amount,
        currency=obj.get("currency"),
        decline_code=decline_code,
        message=message,
    )


def _metadata(obj: Any) -> dict[str, Any]:
    return (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
