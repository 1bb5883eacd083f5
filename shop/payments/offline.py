"""The offline `test` provider: a documented, deterministic provider for demos and tests.

It knows Stripe's documented test cards (docs.stripe.com/testing), as tokens (tok_<name>) and
PaymentMethods (pm_card_<name>), and answers what Stripe's test mode answers, so a staging
checklist reads the same on both:
- tok_visa, tok_mastercard, tok_amex … (and tok_cvcCheckFail, whose CVC check fails but whose
  charge succeeds, as on Stripe), spt_… (a Shared Payment Token): succeeds
- tok_chargeDeclined: card_declined; tok_chargeDeclinedInsufficientFunds: insufficient_funds;
  tok_chargeDeclinedIncorrectCvc: incorrect_cvc; tok_chargeDeclinedExpiredCard: expired_card;
  tok_chargeDeclinedProcessingError: processing_error; lost/stolen/fraudulent cards and
  tok_radarBlock: card_declined (the reason is not told to buyers)
- tok_threeDSecure2Required, tok_threeDSecureRequired, tok_authenticationRequired: needs 3-D
  Secure (declined requires_3ds without threeDS config; authentication_required with it)
- tok_pending (offline only): pending, finished later by a `payment.succeeded` test webhook
- any other tok_/pm_ id: declined `invalid`, as Stripe answers resource_missing
Test webhooks are signed like Razorpay's: `X-Test-Signature` = hex HMAC-SHA256 of the raw
body with TEST_WEBHOOK_SECRET (demo default `demo-webhook-secret`, see README).
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
    WebhookSignatureError,
)
from shop.payments.declines import decline
from shop.security import SignatureError, verify_hex

DEMO_WEBHOOK_SECRET = "demo-webhook-secret"
SIGNATURE_HEADER = "X-Test-Signature"
_SUCCEEDS = {
    "visa", "visa_debit", "mastercard", "mastercard_debit", "mastercard_prepaid", "amex",
    "discover", "diners", "jcb", "unionpay", "cvcCheckFail", "avsFail", "avsZipFail",
    "avsLine1Fail", "riskLevelElevated", "threeDSecureOptional",
}  # fmt: skip
# name -> (Stripe's code, Stripe's decline_code)
_DECLINES = {
    "chargeDeclined": ("card_declined", "generic_decline"),
    "visa_chargeDeclined": ("card_declined", "generic_decline"),
    "chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "chargeDeclinedFraudulent": ("card_declined", "fraudulent"),
    "visa_chargeDeclinedVelocityLimitExceeded": ("card_declined", "card_velocity_exceeded"),
    "chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
    "chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc"),
    "chargeDeclinedProcessingError": ("processing_error", "processing_error"),
    "radarBlock": ("card_declined", "fraudulent"),
}
_NEEDS_3DS = {"threeDSecure2Required", "threeDSecureRequired", "authenticationRequired"}
TEST_CARD_NAMES = frozenset(_SUCCEEDS | set(_DECLINES) | _NEEDS_3DS)


def _card_name(token: str) -> str | None:
    for prefix in ("tok_", "pm_card_"):
        if token.startswith(prefix):
            return token.removeprefix(prefix)
    return None


class TestProvider:
    """Offline provider: no network, outcome chosen by the token."""

    __test__ = False  # not a pytest test class
    name = "test"
    prepares_orders = False

    def __init__(self, settings: Any = None) -> None:
        env = getattr(settings, "env", {}) or {}
        self.webhook_secret = env.get("TEST_WEBHOOK_SECRET") or DEMO_WEBHOOK_SECRET
        self.uses_demo_secret = not env.get("TEST_WEBHOOK_SECRET")
        self._three_ds = getattr(settings, "three_ds", None)

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
                    "supports_3ds": self._three_ds is not None,
                    "environment": "test",
                },
            }
        ]

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Decide the outcome from the token; never touches the network."""
        token = request.credential.token
        reference = f"test_pay_{request.idempotency_key.removeprefix('shop-')}"
        if token == "tok_pending":
            return ChargeResult(ChargeStatus.PENDING, reference)
        name = _card_name(token)
        if name is None or name in _SUCCEEDS:
            return ChargeResult(ChargeStatus.SUCCEEDED, reference)  # spt_… and other credentials
        if name in _DECLINES:
            return decline(*_DECLINES[name], reference)
        if name in _NEEDS_3DS:
            if request.authentication:  # 3DS performed elsewhere: the issuer accepts it
                return ChargeResult(ChargeStatus.SUCCEEDED, reference)
            if self._three_ds is not None:
                return ChargeResult(
                    ChargeStatus.AUTHENTICATION_REQUIRED,
                    reference,
                    "requires_3ds",
                    "This card needs 3-D Secure authentication.",
                    authentication_metadata=self._three_ds.metadata("visa", request.credential),
                )
            return decline("authentication_required", reference=reference)
        return decline("invalid", reference=reference)  # Stripe: resource_missing

    def find_payment(self, session_id: str, attempt: str | None = None) -> ChargeResult | None:
        """Return None: the offline provider always answers, so nothing is ever lost."""
        return None

    def refund(self, reference: str, session_id: str, reason: str = "duplicate") -> str:
        """Refund offline: nothing to call; return a refund id derived from the payment."""
        return f"test_refund_{reference}"

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Verify X-Test-Signature, then decode a test event {id, type, session_id, reference,
        amount?}."""
        signature = next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        try:
            verify_hex(self.webhook_secret, raw_body, signature)
        except SignatureError as exc:
            raise WebhookSignatureError(
                f"{SIGNATURE_HEADER} did not verify ({exc}); sign the raw body with "
                "TEST_WEBHOOK_SECRET (hex HMAC-SHA256), as `flask --app app webhooks simulate "
                "test …` does"
            ) from None
        try:
            event = json.loads(raw_body)
            kind = {
                "payment.succeeded": EventKind.PAID,
                "payment.failed": EventKind.FAILED,
                "payment.disputed": EventKind.DISPUTED,
                "payment.refunded": EventKind.REFUNDED,  # amount: refunded so far in total
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
            raise WebhookPayloadError(
                f"the test event is not JSON with id and type ({type(exc).__name__}: {exc})"
            ) from None
