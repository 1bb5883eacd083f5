"""Stripe's failures sorted: the buyer's credential, the merchant's setup, or the network.

`credential_rejected` tells a bad token (the buyer's problem: a decline) from a bad request
(ours); `setup_error` words a refusal only the merchant can fix (a key, a permission, a
parameter the account or API version lacks); `never_sent` says a connection failed before the
request could reach Stripe; `describe` names an error without echoing request data.
"""

from __future__ import annotations

import requests
import stripe
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from shop.errors import ProviderError

# Invalid-request codes that mean the buyer's credential is unusable (expired, used, unknown);
# every other 400 is a request this store built wrong for the account or API version.
CREDENTIAL_CODES = {
    "resource_missing",
    "token_already_used",
    "payment_method_unexpected_state",
}
CREDENTIAL_PARAMS = ("payment_method", "card[token]", "source")


def credential_rejected(exc: stripe.InvalidRequestError) -> bool:
    """Tell a bad token (expired, used, unknown: the buyer's problem) from a bad request (ours)."""
    param = getattr(exc, "param", None) or ""
    if exc.code not in CREDENTIAL_CODES:
        return False  # parameter_unknown, …_no_longer_supported …: this store's request
    return (
        exc.code != "resource_missing"
        or param.startswith(CREDENTIAL_PARAMS)
        or (param == "payment_method_data[shared_payment_granted_token]")
    )


def setup_error(exc: stripe.StripeError, what: str, version: str) -> ProviderError:
    """A refusal only the merchant can fix: say what to change, for the log."""
    if isinstance(exc, stripe.AuthenticationError):
        fix = (
            "STRIPE_SECRET_KEY is not a valid key for this account; set the secret key from "
            "Dashboard → Developers → API keys"
        )
    elif isinstance(exc, stripe.PermissionError):
        fix = (
            "STRIPE_SECRET_KEY is a restricted key without the permission this needs; give it "
            "write access to PaymentIntents, PaymentMethods and Refunds, or use the secret key"
        )
    elif "shared_payment_granted_token" in (getattr(exc, "param", None) or ""):
        fix = (
            "this account or API version does not accept Shared Payment Tokens; ask Stripe to "
            "enable agentic commerce (Shared Payment Tokens) for the account, and check "
            f"STRIPE_API_VERSION (now {version}) is a preview version that has them"
        )
    else:
        fix = (
            f"Stripe refused a parameter on API version {version} (param "
            f"{getattr(exc, 'param', None)!r}); this store's request does not match the "
            "account's API — report it with the request id"
        )
    return ProviderError(
        f"Stripe refused {what} ({describe(exc)}): {fix}", retryable=False, setup=True
    )


def never_sent(exc: stripe.APIConnectionError) -> bool:
    """True when the connection itself failed, so the request cannot have reached Stripe."""
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, requests.exceptions.ConnectTimeout | NewConnectionError):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return True
        nested = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause = nested or cause.__cause__ or cause.__context__
    return False


def describe(exc: stripe.StripeError) -> str:
    """Name the error without echoing request data (no keys or tokens reach the logs)."""
    return (
        f"{type(exc).__name__} (HTTP {exc.http_status}, code {exc.code}, request "
        f"{exc.request_id}): {exc.user_message or 'no message'}"
    )
