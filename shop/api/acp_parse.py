"""Parse ACP request bodies into domain inputs, with one clear sentence per mistake."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shop.api import json_body
from shop.checkout import MAX_COUPON_CODE_LENGTH, MAX_COUPON_CODES, MAX_LINES, SessionInput
from shop.errors import InvalidRequestError
from shop.payments import PaymentCredential
from shop.pricing.quotes import CartLine

_ADDRESS_REQUIRED = ("name", "line_one", "city", "state", "country", "postal_code")
_ADDRESS_FIELDS = (*_ADDRESS_REQUIRED, "line_two", "company")
_BUYER_FIELDS = ("first_name", "last_name", "full_name", "email", "phone_number", "customer_id")
_CONTACT_FIELDS = ("name", "phone_number", "email")
_MAX_TEXT = 5000


def _bad(code: str, message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(code, message, param)


def json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object (an empty body counts as {})."""
    if not raw.strip():
        return {}
    try:
        value = json_body.loads(raw)
    except json_body.BodyError as exc:
        raise _bad("invalid_json", str(exc), "$") from None
    if not isinstance(value, dict):
        raise _bad(
            "invalid_json",
            f"The request body must be a JSON object ({{...}}), not {type(value).__name__}.",
            "$",
        )
    return value


def _text(value: Any, param: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _bad("missing_field", f"{param} is required.", param)
        return None
    if not isinstance(value, str):
        raise _bad("invalid_type", f"{param} must be a string, got {_kind(value)}.", param)
    if len(value) > _MAX_TEXT:
        raise _bad("too_long", f"{param} must be at most {_MAX_TEXT} characters.", param)
    return value


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "an array",
        dict: "an object",
        str: "a string",
    }.get(type(value), "null")


def _object(value: Any, param: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("invalid_type", f"{param} must be an object, got {_kind(value)}.", param)
    return value


def _strings(value: Any, param: str, fields: tuple[str, ...]) -> dict[str, str]:
    obj = _object(value, param) or {}
    return {k: v for k in fields if (v := _text(obj.get(k), f"{param}.{k}")) is not None}


def address(value: Any, param: str) -> dict[str, str] | None:
    """Validate an ACP Address: every required field a non-empty string."""
    if value is None:
        return None
    parsed = _strings(value, param, _ADDRESS_FIELDS)
    missing = [f for f in _ADDRESS_REQUIRED if not parsed.get(f, "").strip()]
    if missing:
        raise _bad(
            "invalid_address",
            f"{param} is missing {', '.join(missing)}; an address "
            f"needs {', '.join(_ADDRESS_REQUIRED)}.",
            f"{param}.{missing[0]}",
        )
    parsed["country"] = parsed["country"].upper()
    return parsed


def buyer(value: Any) -> dict[str, str] | None:
    """Validate the buyer object (strings only; email required by ACP)."""
    if value is None:
        return None
    parsed = _strings(value, "$.buyer", _BUYER_FIELDS)
    if not parsed.get("email") or "@" not in parsed["email"]:
        raise _bad(
            "invalid_email",
            "$.buyer.email must be an email address like jane@example.com.",
            "$.buyer.email",
        )
    return parsed


def _fulfillment_details(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    parsed: dict[str, Any] = _strings(value, "$.fulfillment_details", _CONTACT_FIELDS)
    addr = address(
        (_object(value, "$.fulfillment_details") or {}).get("address"),
        "$.fulfillment_details.address",
    )
    if addr:
        parsed["address"] = addr
    return parsed


def _quantity(value: Any, param: str) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise _bad(
            "invalid_quantity", f"{param} must be a whole number, got {json.dumps(value)}.", param
        )
    return int(value)


def _lines(value: Any) -> tuple[CartLine, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(
            "invalid_type", f"$.line_items must be an array, got {_kind(value)}.", "$.line_items"
        )
    if len(value) > MAX_LINES:
        raise _bad(
            "too_many_line_items", f"$.line_items holds at most {MAX_LINES} items.", "$.line_items"
        )
    lines = []
    for index, raw in enumerate(value):
        param = f"$.line_items[{index}]"
        obj = _object(raw, param) or {}
        item_id = _text(obj.get("id"), f"{param}.id", required=True) or ""
        # ACP Item has no quantity; agents send one anyway, and repeated ids add up.
        lines.append(CartLine(item_id, _quantity(obj.get("quantity"), f"{param}.quantity")))
    return tuple(lines)


def _codes(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = body.get("coupons")
    param = "$.coupons"
    if raw is None and body.get("discounts") is not None:
        raw = (_object(body["discounts"], "$.discounts") or {}).get("codes")
        param = "$.discounts.codes"
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise _bad("invalid_type", f"{param} must be an array of coupon codes.", param)
    if len(raw) > MAX_COUPON_CODES:
        raise _bad(
            "too_many_coupon_codes",
            f"{param} holds at most {MAX_COUPON_CODES} codes; {len(raw)} were sent.",
            param,
        )
    for index, code in enumerate(raw):
        if len(code) > MAX_COUPON_CODE_LENGTH:
            raise _bad(
                "coupon_code_too_long",
                f"{param}[{index}] is {len(code)} characters; a code has at most "
                f"{MAX_COUPON_CODE_LENGTH}.",
                f"{param}[{index}]",
            )
    return tuple(raw)


def _option_id(body: Mapping[str, Any]) -> str | None:
    selected = body.get("selected_fulfillment_options")
    if selected is None:
        return _text(body.get("fulfillment_option_id"), "$.fulfillment_option_id")
    if not isinstance(selected, list) or not selected:
        raise _bad(
            "invalid_type",
            "$.selected_fulfillment_options must be a non-empty array "
            "of {type, option_id, item_ids}.",
            "$.selected_fulfillment_options",
        )
    first = _object(selected[0], "$.selected_fulfillment_options[0]") or {}
    return _text(
        first.get("option_id"), "$.selected_fulfillment_options[0].option_id", required=True
    )


def session_input(body: Mapping[str, Any], *, creating: bool) -> SessionInput:
    """Turn a create or update body into a SessionInput."""
    lines = _lines(body.get("line_items"))
    if creating and lines is None:
        raise _bad(
            "missing_line_items",
            "$.line_items is required: list the items to buy, "
            'e.g. [{"id": "widget", "quantity": 1}].',
            "$.line_items",
        )
    return SessionInput(
        lines=lines,
        buyer=buyer(body.get("buyer")),
        fulfillment_details=_fulfillment_details(body.get("fulfillment_details")),
        option_id=_option_id(body),
        coupon_codes=_codes(body),
        order_notes=_text(body.get("order_notes"), "$.order_notes"),
        currency=_text(body.get("currency"), "$.currency"),
    )


def payment_credential(body: Mapping[str, Any]) -> PaymentCredential:
    """Read payment_data in the current {handler_id, instrument} or the older {token, provider}
    shape."""
    data = _object(body.get("payment_data"), "$.payment_data")
    if data is None:
        raise _bad(
            "missing_payment_data",
            "$.payment_data is required to complete: send "
            '{"handler_id": "...", "instrument": {"type": "card", "credential": '
            '{"type": "spt", "token": "..."}}}.',
            "$.payment_data",
        )
    billing = address(data.get("billing_address"), "$.payment_data.billing_address")
    instrument = _object(data.get("instrument"), "$.payment_data.instrument")
    if instrument is not None:
        credential = (
            _object(instrument.get("credential"), "$.payment_data.instrument.credential") or {}
        )
        fields = dict(credential)
        token = credential.get("token")
        if token is None and "razorpay_payment_id" in credential:
            token = str(credential["razorpay_payment_id"])
        return PaymentCredential(
            token=_token(token, "$.payment_data.instrument.credential.token"),
            handler_id=_text(data.get("handler_id"), "$.payment_data.handler_id"),
            instrument_type=_text(instrument.get("type"), "$.payment_data.instrument.type"),
            credential_type=_text(
                credential.get("type"), "$.payment_data.instrument.credential.type"
            ),
            billing_address=billing,
            fields=fields,
        )
    token = _token(data.get("token"), "$.payment_data.token")
    return PaymentCredential(
        token=token,
        provider=_text(data.get("provider"), "$.payment_data.provider"),
        billing_address=billing,
        fields=dict(data),
    )


# ACP 2026-04-17 AuthenticationResult.outcome values.
AUTH_OUTCOMES = (
    "abandoned",
    "attempt_acknowledged",
    "authenticated",
    "canceled",
    "denied",
    "informational",
    "internal_error",
    "not_supported",
    "processing_error",
    "rejected",
)
AUTH_WITH_DETAILS = ("authenticated", "informational", "attempt_acknowledged")
_AUTH_DETAILS = (
    "three_ds_cryptogram",
    "electronic_commerce_indicator",
    "transaction_id",
    "version",
)
_ECI = ("01", "02", "05", "06", "07")


def authentication_result(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Read ACP 2026-04-17 authentication_result: {outcome, outcome_details?}; None if absent."""
    result = _object(body.get("authentication_result"), "$.authentication_result")
    if result is None:
        return None
    outcome = _text(result.get("outcome"), "$.authentication_result.outcome", required=True)
    if outcome not in AUTH_OUTCOMES:
        raise _bad(
            "invalid_authentication_result",
            f"$.authentication_result.outcome must be one of {', '.join(AUTH_OUTCOMES)}.",
            "$.authentication_result.outcome",
        )
    details = _object(result.get("outcome_details"), "$.authentication_result.outcome_details")
    if outcome not in AUTH_WITH_DETAILS:
        return {"outcome": outcome}
    found = {}
    for key in _AUTH_DETAILS:
        param = f"$.authentication_result.outcome_details.{key}"
        found[key] = _text((details or {}).get(key), param, required=True)
    if found["electronic_commerce_indicator"] not in _ECI:
        raise _bad(
            "invalid_authentication_result",
            f"$.authentication_result.outcome_details.electronic_commerce_indicator must be one "
            f"of {', '.join(_ECI)}.",
            "$.authentication_result.outcome_details.electronic_commerce_indicator",
        )
    return {"outcome": outcome, "outcome_details": found}


def _token(value: Any, param: str) -> str:
    token = _text(value, param, required=True) or ""
    if not token.strip():
        raise _bad("missing_field", f"{param} must not be empty.", param)
    return token
