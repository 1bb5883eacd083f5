"""What the fake Stripe refuses, read from the pinned stripe library's own typed parameters.

`check_params` walks a decoded form body against the library's `TypedDict` for the endpoint
(`stripe.params.PaymentIntentCreateParams` and friends, generated from Stripe's OpenAPI spec
for the library's API version) and answers Stripe's error for the first thing it refuses:
`parameter_unknown` naming the param as Stripe writes it (`a[b][c]`), `parameter_missing`,
`parameter_invalid_integer`. The library describes one version (stripe.api_version); the
changes Stripe's changelog lists between the versions this store sends are applied on top
(`VERSION_RULES`), each with the changelog entry it comes from.

`STRIPE_TEST_CARDS` is Stripe's documented test tokens/PaymentMethods
(docs.stripe.com/testing) and what each does; anything else is `resource_missing`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ForwardRef, Literal, NotRequired, Required, Union, get_args, get_origin

import stripe
import typing_extensions
from stripe._request_options import RequestOptions
from stripe.params import (
    BalanceRetrieveParams,
    PaymentIntentCancelParams,
    PaymentIntentCreateParams,
    PaymentIntentRetrieveParams,
    PaymentIntentSearchParams,
    PaymentMethodCreateParams,
    RefundCreateParams,
)

LIBRARY_VERSION = stripe.api_version  # what the pinned library's typed params describe
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)

# (method, path regex) -> the library's params for that endpoint.
ENDPOINTS: list[tuple[str, str, type]] = [
    ("GET", r"/v1/balance", BalanceRetrieveParams),
    ("POST", r"/v1/payment_intents", PaymentIntentCreateParams),
    ("GET", r"/v1/payment_intents/search", PaymentIntentSearchParams),
    ("GET", r"/v1/payment_intents/pi_\w+", PaymentIntentRetrieveParams),
    ("POST", r"/v1/payment_intents/pi_\w+/cancel", PaymentIntentCancelParams),
    ("POST", r"/v1/payment_methods", PaymentMethodCreateParams),
    ("POST", r"/v1/refunds", RefundCreateParams),
]


class StripeRefusal(Exception):
    """A request Stripe would refuse: the status and the error object it answers."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def invalid(code: str | None, message: str, param: str | None = None) -> StripeRefusal:
    error = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return StripeRefusal(400, error)


def version_date(version: str) -> str:
    """Return the date part of a Stripe-Version ('2026-04-22.preview' -> '2026-04-22')."""
    return version.split(".", 1)[0]


def is_preview(version: str) -> bool:
    return version.endswith(".preview")


# --------------------------------------------------------------------------- typed params


def _resolve(tp: Any, namespace: Mapping[str, Any]) -> Any:
    if isinstance(tp, str):
        return _resolve(eval(tp, dict(namespace)), namespace)  # the library's own annotation
    if isinstance(tp, ForwardRef):
        return _resolve(tp.__forward_arg__, namespace)
    origin = get_origin(tp)
    if origin in (NotRequired, Required):
        return _resolve(get_args(tp)[0], namespace)
    return tp


def _fields(cls: type) -> dict[str, Any]:
    namespace = vars(__import__(cls.__module__, fromlist=["_"]))
    return {
        key: _resolve(annotation, namespace)
        for key, annotation in cls.__annotations__.items()
        if key not in _OPTION_KEYS or cls is RequestOptions
    }


def _is_typeddict(tp: Any) -> bool:
    return typing_extensions.is_typeddict(tp)  # the library's TypedDicts are typing_extensions'


def _is_mapping(tp: Any) -> bool:
    """Dict[str, str] or the library's UntypedStripeObject[str] (metadata)."""
    origin = get_origin(tp) or tp
    return origin is dict or getattr(origin, "__name__", "") == "UntypedStripeObject"


def _members(tp: Any, namespace: Mapping[str, Any]) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [_resolve(arg, namespace) for arg in get_args(tp)]
    return [tp]


def check_params(
    cls: type, body: Mapping[str, Any], extra: Callable[[str], Any] | None = None, prefix: str = ""
) -> None:
    """Refuse what `cls` (a library TypedDict) does not declare; `extra(param)` may allow more.

    `extra` returns the type of a parameter the version adds beyond the library (or None).
    """
    fields = _fields(cls)
    namespace = vars(__import__(cls.__module__, fromlist=["_"]))
    required = {k for k in getattr(cls, "__required_keys__", ()) if k not in _OPTION_KEYS}
    for key, value in body.items():
        param = f"{prefix}[{key}]" if prefix else key
        tp = fields.get(key)
        if tp is None and extra is not None:
            tp = extra(param)
        if tp is None:
            raise invalid("parameter_unknown", f"Received unknown parameter: {param}", param)
        _check_value(tp, value, param, namespace, extra)
    for key in sorted(required - set(body)):
        param = f"{prefix}[{key}]" if prefix else key
        raise invalid("parameter_missing", f"Missing required param: {param}.", param)


def _check_value(
    tp: Any,
    value: Any,
    param: str,
    namespace: Mapping[str, Any],
    extra: Callable[[str], Any] | None,
) -> None:
    members = _members(tp, namespace)
    if isinstance(value, dict):
        for member in members:
            if _is_typeddict(member):
                check_params(member, value, extra, param)
                return
            if _is_mapping(member):
                return
            if get_origin(member) is list:  # a list Stripe received as a[0]=…
                for item in value.values():
                    _check_value(get_args(member)[0], item, f"{param}[]", namespace, extra)
                return
        keys = ", ".join(sorted(value))
        raise invalid(
            "parameter_unknown", f"Received unknown parameters: {keys} under {param}", param
        )
    if isinstance(value, list):
        for member in members:
            if get_origin(member) is list:
                (item_type,) = get_args(member)
                for index, item in enumerate(value):
                    _check_value(item_type, item, f"{param}[{index}]", namespace, extra)
                return
        raise invalid("parameter_invalid_array", f"Invalid array: {param}", param)
    text = str(value)
    if text == "" and any(get_origin(m) is Literal and "" in get_args(m) for m in members):
        return
    scalars = [
        m
        for m in members
        if not _is_typeddict(m) and not _is_mapping(m) and get_origin(m) is not list
    ]
    if members and not scalars:
        raise invalid("parameter_invalid_empty" if text == "" else None, f"Invalid {param}", param)
    if scalars and all(m is int for m in scalars) and not re.fullmatch(r"-?\d+", text):
        raise invalid("parameter_invalid_integer", f"Invalid integer: {text}", param)
    if scalars and all(m is bool for m in scalars) and text not in ("true", "false"):
        raise invalid(None, f"Invalid boolean: {text}", param)


# ------------------------------------------------------------------ version deltas (changelog)


@dataclass(frozen=True, slots=True)
class VersionRule:
    """A parameter whose presence depends on the API version, with the changelog entry."""

    param: str
    added: str | None  # first version date that has it (None: before every version we send)
    removed: str | None  # first version date that refuses it
    preview_only: bool
    type: Any
    source: str
    removed_code: str | None = None


VERSION_RULES = [
    VersionRule(
        "payment_method_types",
        None,
        "2026-08-26",
        False,
        list[str],
        "docs.stripe.com/changelog/dahlia/2026-08-26/removes-payment-method-types-parameter-"
        "from-payment-intents-setup-intents (preview), .../endive/2026-09-30/removes-the-payment-"
        "method-types-parameter-from-payment-intents-and-setup-intents",
        "payment_method_types_no_longer_supported",
    ),
    VersionRule(
        "allowed_payment_method_types",
        "2026-07-29",
        None,
        False,
        list[str],
        "docs.stripe.com/changelog/dahlia/2026-07-29/allowed-payment-method-types-parameter",
    ),
    VersionRule(
        "payment_method_data[shared_payment_granted_token]",
        "2026-04-22",
        None,
        True,
        str,
        "docs.stripe.com/changelog/dahlia/2026-04-22/shared-payment-granted-token",
    ),
]
_RULES = {rule.param: rule for rule in VERSION_RULES}
# Mutually exclusive with allowed_payment_method_types (the 2026-07-29 changelog entry).
EXCLUSIVE_WITH_ALLOWED = (
    "payment_method_types",
    "excluded_payment_method_types",
    "automatic_payment_methods",
    "payment_method_configuration",
)


def _has(rule: VersionRule, version: str) -> bool:
    date = version_date(version)
    if rule.preview_only and not is_preview(version):
        return False
    if rule.added and date < rule.added:
        return False
    return not (rule.removed and date >= rule.removed)


def check_payment_intent_version(body: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Refuse what the library declares but `version` does not have, and the removals.

    Return the body left to check against the library's types: a Shared Payment Token is
    the whole payment_method_data on the preview versions that have it (the 2026-04-22
    changelog entry passes only the token), so it is taken out with that object.
    """
    for rule in VERSION_RULES:
        head, _, rest = rule.param.partition("[")
        value = body.get(head)
        if rest and isinstance(value, Mapping):
            value = value.get(rest.rstrip("]"))
        if value is None or _has(rule, version):
            continue
        if rule.removed and version_date(version) >= rule.removed and rule.removed_code:
            raise invalid(
                rule.removed_code,
                f"The `{rule.param}` parameter is no longer supported on API version {version}.",
                rule.param,
            )
        raise invalid("parameter_unknown", f"Received unknown parameter: {rule.param}", rule.param)
    if body.get("allowed_payment_method_types") is not None:
        clash = [p for p in EXCLUSIVE_WITH_ALLOWED if p in body]
        if clash:
            raise invalid(
                "parameters_exclusive",
                f"You cannot pass both allowed_payment_method_types and {clash[0]}.",
                clash[0],
            )
    # Dynamic payment methods are on unless the request limits the types: confirming then
    # needs a return_url (redirect-based methods) unless redirects are turned off.
    limited = body.get("allowed_payment_method_types") or body.get("payment_method_types")
    apm = body.get("automatic_payment_methods") or {}
    if (
        body.get("confirm") == "true"
        and not limited
        and not body.get("return_url")
        and apm.get("allow_redirects") != "never"
    ):
        raise invalid(
            None,
            "This PaymentIntent is configured to accept payment methods enabled in your "
            "Dashboard. Because some of these payment methods might redirect your customer off "
            "of your page, you must provide a `return_url`.",
            "return_url",
        )
    rest = dict(body)
    data = body.get("payment_method_data")
    if isinstance(data, Mapping) and "shared_payment_granted_token" in data:
        if set(data) != {"shared_payment_granted_token"}:
            raise invalid(
                "parameters_exclusive",
                "payment_method_data[shared_payment_granted_token] cannot be combined with "
                "other payment_method_data parameters.",
                "payment_method_data",
            )
        del rest["payment_method_data"]
    for rule in VERSION_RULES:  # present and allowed on this version: not the library's to judge
        if rule.param in rest and rule.param not in _fields(PaymentIntentCreateParams):
            del rest[rule.param]
    return rest


# ------------------------------------------------------------------------ documented tokens


@dataclass(frozen=True, slots=True)
class TestCard:
    """What one of Stripe's documented test cards does when a PaymentIntent confirms it."""

    __test__ = False
    brand: str = "visa"
    outcome: str = "succeeded"  # succeeded | card_error | requires_action
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    param: str | None = None


_DECLINED = "Your card was declined."
# docs.stripe.com/testing: tokens (tok_<name>) and PaymentMethods (pm_card_<name>) alike.
STRIPE_TEST_CARDS: dict[str, TestCard] = {
    "visa": TestCard(),
    "visa_debit": TestCard(),
    "mastercard": TestCard("mastercard"),
    "mastercard_debit": TestCard("mastercard"),
    "mastercard_prepaid": TestCard("mastercard"),
    "amex": TestCard("amex"),
    "discover": TestCard("discover"),
    "diners": TestCard("diners"),
    "jcb": TestCard("jcb"),
    "unionpay": TestCard("unionpay"),
    "cvcCheckFail": TestCard(),  # cvc_check fails; the charge succeeds unless Radar blocks it
    "avsFail": TestCard(),
    "avsZipFail": TestCard(),
    "avsLine1Fail": TestCard(),
    "riskLevelElevated": TestCard(),
    "threeDSecureOptional": TestCard(),
    "chargeDeclined": TestCard(
        outcome="card_error", code="card_declined", decline_code="generic_decline"
    ),
    "visa_chargeDeclined": TestCard(
        outcome="card_error", code="card_declined", decline_code="generic_decline"
    ),
    "chargeDeclinedInsufficientFunds": TestCard(
        outcome="card_error", code="card_declined", decline_code="insufficient_funds"
    ),
    "visa_chargeDeclinedInsufficientFunds": TestCard(
        outcome="card_error", code="card_declined", decline_code="insufficient_funds"
    ),
    "chargeDeclinedLostCard": TestCard(
        outcome="card_error", code="card_declined", decline_code="lost_card"
    ),
    "chargeDeclinedStolenCard": TestCard(
        outcome="card_error", code="card_declined", decline_code="stolen_card"
    ),
    "chargeDeclinedFraudulent": TestCard(
        outcome="card_error", code="card_declined", decline_code="fraudulent"
    ),
    "visa_chargeDeclinedVelocityLimitExceeded": TestCard(
        outcome="card_error", code="card_declined", decline_code="card_velocity_exceeded"
    ),
    "chargeDeclinedExpiredCard": TestCard(
        outcome="card_error",
        code="expired_card",
        decline_code="expired_card",
        message="Your card has expired.",
        param="exp_month",
    ),
    "chargeDeclinedIncorrectCvc": TestCard(
        outcome="card_error",
        code="incorrect_cvc",
        decline_code="incorrect_cvc",
        message="Your card's security code is incorrect.",
        param="cvc",
    ),
    "chargeDeclinedProcessingError": TestCard(
        outcome="card_error",
        code="processing_error",
        decline_code="processing_error",
        message="An error occurred while processing your card. Try again in a little bit.",
    ),
    "radarBlock": TestCard(outcome="card_error", code="card_declined", decline_code="fraudulent"),
    "threeDSecure2Required": TestCard(outcome="requires_action"),
    "threeDSecureRequired": TestCard(outcome="requires_action"),
    "authenticationRequired": TestCard(outcome="requires_action"),
}


def documented_card(token: str) -> TestCard | None:
    """Return the documented test card a tok_/pm_card_ id names, or None (Stripe: no such id)."""
    for prefix in ("tok_", "pm_card_"):
        if token.startswith(prefix):
            return STRIPE_TEST_CARDS.get(token.removeprefix(prefix))
    return None
