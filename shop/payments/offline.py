"""The offline `test` provider: a documented, deterministic provider for demos and tests.

Tokens (Stripe's test-token names, so a staging checklist reads the same):
- tok_visa, spt_…, pm_card_visa and any other token: succeeds
- tok_chargeDeclined: declined, card_declined
- tok_cvcCheckFail: declined, incorrect_cvc
- tok_threeDSecureRequired: declined, requires_3ds (3DS is not supported yet)
- tok_pending: pending (the payment is finished later by a provider webhook)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shop.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    EventKind,
    PaymentEvent,
    WebhookPayloadError,
)

_DECLINES = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined. Please use a different card."),
    "tok_cvcCheckFail": (
        "incorrect_cvc",
        "The card's security code (CVC) is incorrect. Please check it or use a different card.",
    ),
    "tok_threeDSecureRequired": (
        "requires_3ds",
        "This card needs 3-D Secure authentication, which this store does not support yet. "
        "Please use a different card.",
    ),
}


class TestProvider:
    """Offline provider: no network, outcome chosen by the token."""

    __test__ = False  # not a pytest test class
    name = "test"

    def prepare(
        self, session_id: str, amount: int, currency: str, current_reference: str | None
    ) -> str | None:
        """Return None: the test provider needs no provider-side order."""
        return None

    def handlers(self, provider_order_id: str | None) -> list[dict[str, Any]]:
        """Advertise a tokenized-card handler that accepts the documented test tokens."""
        return [
            {
                "id": "card_tokenized",
                "name": "dev.acp.tokenized.card",
                "display_name": "Card (test mode)",
                "version": "2026-01-22",
                "spec": "https://acp.dev/handlers/tokenized.card",
                "requires_delegate_payment": True,
                "requires_pci_compliance": False,
                "psp": "test",
                "config_schema": "https://acp.dev/schemas/handlers/tokenized.card/config.json",
                "instrument_schemas": [
                    "https://acp.dev/schemas/handlers/tokenized.card/instrument.json"
                ],
                "config": {
                    "merchant_id": "test",
                    "psp": "test",
                    "accepted_brands": ["visa", "mastercard", "amex", "discover"],
                    "environment": "test",
                },
            }
        ]

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Decide the outcome from the token; never touches the network."""
        token = request.credential.token
        reference = f"test_pay_{request.idempotency_key.removeprefix('shop-')}"
        if token in _DECLINES:
            code, message = _DECLINES[token]
            return ChargeResult(ChargeStatus.DECLINED, reference, code, message)
        if token == "tok_pending":
            return ChargeResult(ChargeStatus.PENDING, reference)
        return ChargeResult(ChargeStatus.SUCCEEDED, reference)

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Decode an unsigned test event {id, type, session_id, reference, amount?}."""
        try:
            event = json.loads(raw_body)
            kind = {
                "payment.succeeded": EventKind.PAID,
                "payment.failed": EventKind.FAILED,
                "payment.disputed": EventKind.DISPUTED,
            }.get(event["type"], EventKind.IGNORED)
            amount = event.get("amount")
            if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
                raise TypeError("amount must be an integer in minor units")
            return PaymentEvent(
                id=str(event["id"]),
                type=str(event["type"]),
                kind=kind,
                session_id=event.get("session_id"),
                reference=event.get("reference"),
                amount=amount,
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Unsigned, so a bad body is a payload problem, never a signature one.
            raise WebhookPayloadError(
                f"the test event is not JSON with id and type ({type(exc).__name__}: {exc})"
            ) from None
