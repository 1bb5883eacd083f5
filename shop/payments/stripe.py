"""The Stripe provider: one confirmed PaymentIntent per attempt, and Stripe's signed webhooks.

Each provider owns its own `stripe.StripeClient` (no module-level API key), with network
retries off — the checkout domain decides about retries, and the Idempotency-Key makes a
retried attempt safe. `STRIPE_API_BASE` points the client at another host (the tests' fake),
`STRIPE_API_VERSION` chooses the API version used for Shared Payment Token calls.
Decline codes become buyer sentences in shop.payments.declines; webhooks are read in
shop.payments.stripe_events.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import stripe

from shop.errors import ConfigError, ProviderError
from shop.payments import ChargeRequest, ChargeResult, ChargeStatus, PaymentEvent
from shop.payments.declines import decline
from shop.payments.stripe_events import parse_event

log = logging.getLogger("shop.payments.stripe")

# payment_method_data.shared_payment_granted_token arrived in this (preview) API version.
DEFAULT_SPT_API_VERSION = "2026-04-22.preview"
TIMEOUT = (5, 25)  # connect, read: below gunicorn's default 30 s worker timeout
ACCEPTED_BRANDS = ("visa", "mastercard", "amex", "discover")


class StripeProvider:
    """Charge delegated card tokens and Shared Payment Tokens through Stripe."""

    name = "stripe"

    def __init__(self, settings: Any) -> None:
        key = settings.secret("STRIPE_SECRET_KEY")
        if not key:
            raise ConfigError(
                "paymentProvider is 'stripe' but STRIPE_SECRET_KEY is not set; "
                "export it before starting."
            )
        env = settings.env
        base = env.get("STRIPE_API_BASE")
        self._test_mode = key.startswith(("sk_test_", "rk_test_"))
        self._webhook_secret = settings.secret("STRIPE_WEBHOOK_SECRET")
        self._spt_version = env.get("STRIPE_API_VERSION") or DEFAULT_SPT_API_VERSION
        self._account = _account_id(env.get("STRIPE_ACCOUNT_ID"), self._test_mode)
        self._client = stripe.StripeClient(
            key,
            base_addresses={"api": base.rstrip("/")} if base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=TIMEOUT),
        )

    @property
    def test_mode(self) -> bool:
        """True when STRIPE_SECRET_KEY is a test key (sk_test_/rk_test_): no real money moves."""
        return self._test_mode

    def prepare(
        self, session_id: str, amount: int, currency: str, current_reference: str | None
    ) -> str | None:
        """Return None: a PaymentIntent is created at charge time, not before."""
        return None

    def handlers(self, provider_order_id: str | None) -> list[dict[str, Any]]:
        """Advertise the delegated tokenized-card handler processed by Stripe."""
        return [
            {
                "id": "card_tokenized",
                "name": "dev.acp.tokenized.card",
                "display_name": "Credit or debit card",
                "version": "2026-01-22",
                "spec": "https://acp.dev/handlers/tokenized.card",
                "requires_delegate_payment": True,
                "requires_pci_compliance": False,
                "psp": "stripe",
                "config_schema": "https://acp.dev/schemas/handlers/tokenized.card/config.json",
                "instrument_schemas": [
                    "https://acp.dev/schemas/handlers/tokenized.card/instrument.json"
                ],
                "config": {
                    "merchant_id": self._account,
                    "psp": "stripe",
                    "accepted_brands": list(ACCEPTED_BRANDS),
                    "supports_3ds": False,
                    "environment": "test" if self._test_mode else "production",
                },
            }
        ]

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm one PaymentIntent for this attempt; map its outcome."""
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "confirm": True,
            "payment_method_types": ["card"],
            "metadata": {"checkout_session_id": request.session_id},
        }
        if request.description:
            params["description"] = request.description
        options: dict[str, Any] = {"idempotency_key": request.idempotency_key}
        token = request.credential.token
        kind = _token_kind(token, request.credential.credential_type)
        if kind == "spt":
            params["payment_method_data"] = {"shared_payment_granted_token": token}
            options["stripe_version"] = self._spt_version
        elif kind == "card_token":
            params["payment_method_data"] = {"type": "card", "card": {"token": token}}
        else:
            params["payment_method"] = token
        try:
            intent = self._client.v1.payment_intents.create(params=params, options=options)
        except stripe.CardError as exc:
            error = (exc.json_body or {}).get("error") or {}
            intent_id = (error.get("payment_intent") or {}).get("id")
            log.info(
                "stripe declined session %s: code=%s decline_code=%s",
                request.session_id,
                exc.code,
                error.get("decline_code"),
            )
            return decline(exc.code, error.get("decline_code"), intent_id)
        except stripe.InvalidRequestError as exc:
            if _credential_rejected(exc):
                log.info(
                    "stripe rejected the credential for session %s: %s",
                    request.session_id,
                    exc.code,
                )
                return decline("invalid")
            raise ProviderError(
                f"Stripe refused the PaymentIntent: {_describe(exc)}", retryable=False
            ) from exc
        except stripe.IdempotencyError as exc:
            raise ProviderError(
                f"Stripe idempotency conflict: {_describe(exc)}", retryable=False
            ) from exc
        except stripe.APIError as exc:
            # Stripe stores a 500 under the idempotency key: the same token replays it, so
            # only a new credential (a new key) can succeed.
            raise ProviderError(
                f"Stripe failed the PaymentIntent: {_describe(exc)}",
                retryable=exc.http_status != 500,
            ) from exc
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe request failed: {_describe(exc)}") from exc
        return self._outcome(request, intent)

    def _outcome(self, request: ChargeRequest, intent: Any) -> ChargeResult:
        status = intent.status
        if status == "succeeded":
            return ChargeResult(ChargeStatus.SUCCEEDED, intent.id)
        if status == "processing":
            return ChargeResult(ChargeStatus.PENDING, intent.id)
        if status == "requires_action":
            self._cancel(intent.id, request)
            return decline("authentication_required", reference=intent.id)
        if status == "requires_payment_method":
            error = _plain(intent).get("last_payment_error") or {}
            return decline(error.get("code"), error.get("decline_code"), intent.id)
        raise ProviderError(
            f"Stripe PaymentIntent {intent.id} is in unexpected status "
            f"{status!r}; check it in the Stripe dashboard.",
            retryable=False,
        )

    def _cancel(self, intent_id: str, request: ChargeRequest) -> None:
        # 3DS is not supported yet: cancel so the authorization can never complete later.
        try:
            self._client.v1.payment_intents.cancel(
                intent_id,
                params={"cancellation_reason": "abandoned"},
                options={"idempotency_key": f"{request.idempotency_key}-cancel"},
            )
        except stripe.StripeError as exc:
            # Without the buyer's authentication it cannot be charged; Stripe expires it.
            log.warning(
                "could not cancel Stripe PaymentIntent %s needing 3DS: %s",
                intent_id,
                _describe(exc),
            )

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Verify Stripe-Signature with the stripe library, then reduce the event."""
        return parse_event(self._client, raw_body, headers, self._webhook_secret)


def _account_id(value: str | None, test_mode: bool) -> str:
    """Check STRIPE_ACCOUNT_ID, the handler's merchant_id: required with a live key."""
    if value and not value.startswith("acct_"):
        raise ConfigError(
            f"STRIPE_ACCOUNT_ID must be a Stripe account id like acct_1A2b3C (Dashboard → "
            f"Settings → Business → Account details), not {value[:12]!r}."
        )
    if value:
        return value
    if not test_mode:
        # Agent platforms bind a delegated payment token to the merchant_id we advertise.
        raise ConfigError(
            "STRIPE_SECRET_KEY is a live key but STRIPE_ACCOUNT_ID is not set; export your "
            "Stripe account id (acct_…, Dashboard → Settings → Business → Account details) "
            "so agents' delegated tokens are issued for this account."
        )
    log.warning(
        "STRIPE_ACCOUNT_ID is not set: the card handler advertises merchant_id "
        "'acct_unknown'; set it before agents pay with delegated tokens (required with a "
        "live key)"
    )
    return "acct_unknown"


def _token_kind(token: str, credential_type: str | None) -> str:
    """Say which Stripe parameter carries this token: spt, card_token or payment_method.

    Stripe ids say what they are, so the prefix wins over the ACP credential type: ACP's
    tokenized-card credential is type "spt" whatever it holds, test tokens like tok_visa too.
    """
    if token.startswith("spt_"):
        return "spt"
    if token.startswith("tok_"):
        return "card_token"
    if token.startswith(("pm_", "card_", "src_")):  # older card_/src_ ids work as payment methods
        return "payment_method"
    return "spt" if credential_type == "spt" else "payment_method"


def _credential_rejected(exc: stripe.InvalidRequestError) -> bool:
    """Tell a bad token (expired, used, unknown: the buyer's problem) from a bad request (ours)."""
    param = getattr(exc, "param", None) or ""
    return param.startswith(("payment_method", "shared_payment")) or exc.code in {
        "resource_missing",
        "token_already_used",
        "payment_method_unexpected_state",
    }


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _describe(exc: stripe.StripeError) -> str:
    """Name the error without echoing request data (no keys or tokens reach the logs)."""
    return (
        f"{type(exc).__name__} (HTTP {exc.http_status}, code {exc.code}, request "
        f"{exc.request_id}): {exc.user_message or 'no message'}"
    )
