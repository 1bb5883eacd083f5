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
from shop.money import to_provider_units
from shop.payments import ChargeRequest, ChargeResult, ChargeStatus, PaymentEvent
from shop.payments import stripe_params as params
from shop.payments.declines import decline
from shop.payments.stripe_errors import credential_rejected, describe, never_sent, setup_error
from shop.payments.stripe_events import parse_event

log = logging.getLogger("shop.payments.stripe")

TIMEOUT = (5, 25)  # connect, read: below gunicorn's default 30 s worker timeout
ACCEPTED_BRANDS = ("visa", "mastercard", "amex", "discover")


class StripeProvider:
    """Charge delegated card tokens and Shared Payment Tokens through Stripe."""

    name = "stripe"
    prepares_orders = False

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
        self._spt_version = env.get("STRIPE_API_VERSION") or params.DEFAULT_SPT_API_VERSION
        self._account = _account_id(env.get("STRIPE_ACCOUNT_ID"), self._test_mode)
        self._three_ds = getattr(settings, "three_ds", None)
        self._expand = ["payment_method"] if self._three_ds is not None else None
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
        config: dict[str, Any] = {
            "merchant_id": self._account,
            "psp": "stripe",
            "accepted_brands": list(ACCEPTED_BRANDS),
            "supports_3ds": self._three_ds is not None,
            "environment": "test" if self._test_mode else "production",
        }
        if self._three_ds is not None:
            config["3ds_versions"] = ["2.1.0", "2.2.0"]
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
                "config": config,
            }
        ]

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm one PaymentIntent for this attempt; map its outcome.

        A lost answer is repeated once under the same idempotency key (Stripe replays what it
        did), then looked up by the attempt's metadata; only then is the outcome unknown.
        """
        token = request.credential.token
        kind = _token_kind(token, request.credential.credential_type)
        version = self._spt_version if kind == "spt" else params.CARD_API_VERSION
        payment_method = None
        if kind == "card_token":
            answer = self._create(
                request,
                "payment_methods",
                params.payment_method_from_token(token),
                f"{request.idempotency_key}-pm",
                version,
            )
            if isinstance(answer, ChargeResult):
                return answer
            payment_method = answer.id
        elif kind == "payment_method":
            payment_method = token
        body = params.payment_intent(
            amount=to_provider_units(request.amount, request.currency, "stripe"),
            currency=request.currency,
            session_id=request.session_id,
            attempt=request.idempotency_key,
            version=version,
            description=request.description,
            payment_method=payment_method,
            shared_payment_token=token if kind == "spt" else None,
            authentication=request.authentication,
        )
        if self._expand:  # the card brand picks the 3DS directory server
            body["expand"] = self._expand
        intent = self._create(request, "payment_intents", body, request.idempotency_key, version)
        if isinstance(intent, ChargeResult):
            return intent
        return self._outcome(request, intent)

    def _create(
        self, request: ChargeRequest, resource: str, body: dict[str, Any], key: str, version: str
    ) -> Any:
        """POST one create; return the object, a decline, or raise ProviderError."""
        service = getattr(self._client.v1, resource)
        options: dict[str, Any] = {"idempotency_key": key, "stripe_version": version}
        for attempt in (1, 2):
            try:
                return service.create(params=body, options=options)
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
                if credential_rejected(exc):
                    log.info(
                        "stripe rejected the credential for session %s: %s (param %s)",
                        request.session_id,
                        exc.code,
                        exc.param,
                    )
                    return decline("invalid")
                raise setup_error(exc, f"POST /v1/{resource}", version) from exc
            except (stripe.AuthenticationError, stripe.PermissionError) as exc:
                raise setup_error(exc, f"POST /v1/{resource}", version) from exc
            except stripe.IdempotencyError as exc:
                raise ProviderError(
                    f"Stripe idempotency conflict: {describe(exc)}", retryable=False
                ) from exc
            except stripe.APIConnectionError as exc:
                if never_sent(exc):  # refused, unresolved, connect timeout: Stripe saw nothing
                    raise ProviderError(f"Stripe could not be reached: {describe(exc)}") from exc
                if attempt == 1:  # the same key: Stripe answers what it did the first time
                    log.warning(
                        "no answer from Stripe for session %s (%s); asking again under the "
                        "same idempotency key",
                        request.session_id,
                        type(exc).__name__,
                    )
                    continue
                if resource != "payment_intents":
                    raise ProviderError(f"Stripe could not be reached: {describe(exc)}") from exc
                return self._look_up(request, exc)
            except stripe.APIError as exc:
                if exc.http_status == 409 or (exc.http_status or 0) >= 500:
                    # 409: the same key is still running; 5xx: Stripe may have acted.
                    if resource == "payment_intents":
                        return self._look_up(request, exc)
                    raise ProviderError(
                        f"Stripe failed: {describe(exc)}", retryable=exc.http_status != 500
                    ) from exc
                raise ProviderError(f"Stripe failed: {describe(exc)}") from exc
            except stripe.StripeError as exc:  # rate limits: Stripe acted on nothing
                raise ProviderError(f"Stripe request failed: {describe(exc)}") from exc
        raise AssertionError("unreachable")

    def _look_up(self, request: ChargeRequest, cause: stripe.StripeError) -> ChargeResult:
        """Learn a lost attempt's outcome from its metadata, or say it is unknown."""
        found = self.find_payment(request.session_id, request.idempotency_key)
        if found is not None:
            log.warning(
                "session %s: Stripe's answer was lost (%s); found the attempt: %s %s",
                request.session_id,
                type(cause).__name__,
                found.status,
                found.reference,
            )
            return found
        if isinstance(cause, stripe.APIError) and cause.http_status == 500:
            # Stripe stored its 500 under this key: this token can only replay it.
            raise ProviderError(
                f"Stripe failed the PaymentIntent: {describe(cause)}", retryable=False
            ) from cause
        raise ProviderError(
            f"Stripe's answer for session {request.session_id} was lost ({describe(cause)}) "
            "and no PaymentIntent for this attempt was found yet",
            outcome_unknown=True,
        ) from cause

    def find_payment(self, session_id: str, attempt: str | None = None) -> ChargeResult | None:
        """Look up this session's PaymentIntents by metadata; None when none is found.

        With `attempt`, only that attempt's PaymentIntent counts; without, a succeeded (or
        processing) one of any attempt does. Raise ProviderError when Stripe cannot answer.
        """
        try:
            found = self._client.v1.payment_intents.search(
                params=params.search_by_session(session_id),
                options={"stripe_version": params.CARD_API_VERSION},
            )
        except stripe.StripeError as exc:
            raise ProviderError(
                f"Stripe could not look up session {session_id}'s payments: {describe(exc)}",
                outcome_unknown=True,
            ) from exc
        intents = [
            i
            for i in found.data
            if attempt is None or (_plain(i).get("metadata") or {}).get("shop_attempt") == attempt
        ]
        for status in ("succeeded", "processing"):
            for intent in intents:
                if intent.status == status:
                    return (
                        ChargeResult(ChargeStatus.SUCCEEDED, intent.id)
                        if status == "succeeded"
                        else ChargeResult(ChargeStatus.PENDING, intent.id)
                    )
        if attempt is not None and intents:
            intent = intents[0]
            error = _plain(intent).get("last_payment_error") or {}
            return decline(error.get("code"), error.get("decline_code"), intent.id)
        return None

    def refund(self, reference: str, session_id: str, reason: str = "duplicate") -> str:
        """Refund a whole PaymentIntent once (keyed by it); return the refund id."""
        try:
            refund = self._client.v1.refunds.create(
                params=params.refund(reference, session_id, reason),
                options={
                    "idempotency_key": f"shop-refund-{reference}",
                    "stripe_version": params.CARD_API_VERSION,
                },
            )
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise setup_error(exc, "POST /v1/refunds", params.CARD_API_VERSION) from exc
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe could not refund {reference}: {describe(exc)}") from exc
        return str(refund.id)

    def _outcome(self, request: ChargeRequest, intent: Any) -> ChargeResult:
        status = intent.status
        if status == "succeeded":
            return ChargeResult(ChargeStatus.SUCCEEDED, intent.id)
        if status == "processing":
            return ChargeResult(ChargeStatus.PENDING, intent.id)
        if status == "requires_action":
            self._cancel(intent.id, request)
            if self._three_ds is not None and request.authentication is None:
                return ChargeResult(
                    ChargeStatus.AUTHENTICATION_REQUIRED,
                    intent.id,
                    "requires_3ds",
                    "This card needs 3-D Secure authentication.",
                    authentication_metadata=self._three_ds.metadata(
                        _brand(intent), request.credential
                    ),
                )
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
        # Stripe's own 3DS flow needs the buyer's browser, which an agent checkout does not
        # have: cancel, so the authorization can never complete later.
        try:
            self._client.v1.payment_intents.cancel(
                intent_id,
                params={"cancellation_reason": "abandoned"},
                options={
                    "idempotency_key": f"{request.idempotency_key}-cancel",
                    "stripe_version": params.CARD_API_VERSION,
                },
            )
        except stripe.StripeError as exc:
            # Without the buyer's authentication it cannot be charged; Stripe expires it.
            log.warning(
                "could not cancel Stripe PaymentIntent %s needing 3DS: %s",
                intent_id,
                describe(exc),
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


def _brand(intent: Any) -> str | None:
    method = getattr(intent, "payment_method", None)
    card = getattr(method, "card", None) if not isinstance(method, str) else None
    return getattr(card, "brand", None)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
