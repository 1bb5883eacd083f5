"""The PaymentProvider contract: what checkout asks of Stripe, Razorpay or the test provider.

Providers never touch the database and never return SDK objects; they answer with the
frozen dataclasses below and raise ProviderError (from shop.errors) when the provider
could not be reached or answered something we cannot interpret.

Belongs here: the contract, each provider (`offline` is the `test` one), decline wording,
and parsing each provider's webhooks into PaymentEvents. What an event does to a session is
checkout's (shop.checkout.payment_events).

May import: pricing, config and the shared modules in shop/. Never storage: providers do
not touch the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PaymentCredential:
    """What the agent handed us to pay with, in either ACP payment_data shape."""

    token: str
    handler_id: str | None = None
    instrument_type: str | None = None
    credential_type: str | None = None
    provider: str | None = None
    billing_address: Mapping[str, Any] | None = None
    # The raw credential object, for providers whose credential is more than a token
    # (Razorpay: razorpay_payment_id, razorpay_order_id, razorpay_signature).
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    session_id: str
    amount: int
    currency: str
    credential: PaymentCredential
    description: str = ""
    provider_order_id: str | None = None
    # ACP AuthenticationResult.outcome_details of 3-D Secure performed by the agent's side.
    authentication: Mapping[str, Any] | None = None

    @property
    def idempotency_key(self) -> str:
        """Key for the provider: one per (session, credential, authentication), so a retry
        never charges twice and an authenticated retry is a new attempt."""
        seed = self.credential.token
        if self.authentication:
            seed += "|3ds|" + str(self.authentication.get("transaction_id", ""))
        digest = hashlib.sha256(seed.encode()).hexdigest()[:24]
        return f"shop-{self.session_id}-{digest}"


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    PENDING = "pending"  # async: the provider's webhook finishes it
    # The issuer wants 3-D Secure, which the agent's side can perform (ACP 2026-04-17)
    AUTHENTICATION_REQUIRED = "authentication_required"


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    reference: str | None = None
    # For declines: a message code (card_declined, incorrect_cvc, requires_3ds, ...) and
    # a sentence a buyer understands.
    decline_code: str | None = None
    message: str | None = None
    # With AUTHENTICATION_REQUIRED: ACP AuthenticationMetadata (acquirer, directory server).
    authentication_metadata: Mapping[str, Any] | None = None


class EventKind(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    DISPUTED = "disputed"
    IGNORED = "ignored"
    REFUNDED = "refunded"  # amount = the refunds so far in total (a full one cancels the order)


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A verified provider webhook, reduced to what the checkout domain acts on."""

    id: str
    type: str
    kind: EventKind
    session_id: str | None = None
    reference: str | None = None
    amount: int | None = None
    currency: str | None = None
    decline_code: str | None = None
    message: str | None = None


class WebhookSignatureError(Exception):
    """A provider webhook failed verification; the message says which check failed."""


class WebhookPayloadError(Exception):
    """A genuine (verified) provider webhook whose body is not an event we can read."""


class PaymentProvider(Protocol):
    """One payment provider. Implementations: offline.TestProvider, stripe, razorpay."""

    name: str
    # True when prepare() calls the provider (Razorpay makes an order): create and update
    # then look their Idempotency-Key up before running, so a retry makes no second one.
    prepares_orders: bool

    def prepare(
        self, session_id: str, amount: int, currency: str, current_reference: str | None
    ) -> str | None:
        """Return a provider-side order for this amount (Razorpay), or None when none is needed."""
        ...

    def handlers(self, provider_order_id: str | None) -> list[dict[str, Any]]:
        """Return the ACP PaymentHandler objects advertised in capabilities.payment.handlers."""
        ...

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge the credential once; raise ProviderError when the outcome is unknown."""
        ...

    def find_payment(self, session_id: str, attempt: str | None = None) -> ChargeResult | None:
        """Look up what the provider did for this session (or one attempt); None: nothing found.

        Raise ProviderError when the provider cannot be asked.
        """
        ...

    def refund(self, reference: str, session_id: str, reason: str = "duplicate") -> str:
        """Refund a whole payment (once, however often asked); return the refund's id."""
        ...

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Verify and decode a provider webhook.

        Raise WebhookSignatureError when it is not genuine, WebhookPayloadError when it is
        genuine but not an event this store can read.
        """
        ...


def build_provider(settings: Any) -> PaymentProvider:
    """Return the provider named by settings.payment_provider."""
    if settings.payment_provider == "test":
        from shop.payments.offline import TestProvider

        return TestProvider(settings)
    if settings.payment_provider == "stripe":
        from shop.payments.stripe import StripeProvider

        return StripeProvider(settings)
    if settings.payment_provider == "razorpay":
        from shop.payments.razorpay import RazorpayProvider

        return RazorpayProvider(settings)
    raise ValueError(f"unknown payment provider {settings.payment_provider!r}")
