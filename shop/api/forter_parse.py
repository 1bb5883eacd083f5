"""Parse Forter merchant-endpoint requests (event envelope, items, recipient, payment) liberally.

The guide's field names are read wherever they turn up: at the top level or under `data`,
event types as `cart.created`, `cart_created` or `cart created`; unknown fields are ignored.
Amounts arrive as decimals (29.99) and are checked against the currency's exponent before
they become minor units.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from shop.api import json_body
from shop.checkout import MAX_LINES, MAX_QUANTITY, SessionInput
from shop.config.catalog import Catalog
from shop.errors import InvalidRequestError
from shop.money import exponent, from_decimal
from shop.payments import PaymentCredential
from shop.pricing.quotes import CartLine

_EVENT_KEYS = ("event", "event_type", "eventType", "type")
# The largest amount this surface takes, in minor units: 15 significant digits is what a JSON
# number (a double) carries exactly, and the totals are sent back as JSON numbers.
MAX_MINOR_UNITS = 10**15 - 1
_NESTED_KEYS = ("data", "payload")


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError("invalid_request", message)


def _shown(value: Any) -> str:
    """A value for an error message: a number as sent, cut short (10**400 has 401 digits)."""
    shown = str(value) if isinstance(value, int | Decimal) else repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def envelope(raw: bytes) -> dict[str, Any]:
    """Decode the body (floats as Decimal) and flatten `data`/`payload` over the envelope."""
    try:
        body = json_body.loads(raw or b"{}", parse_float=Decimal)
    except json_body.BodyError as exc:
        raise _bad(str(exc)) from None
    if not isinstance(body, dict):
        raise _bad("The request body must be one JSON object (the event envelope).")
    flat = dict(body)
    for key in _NESTED_KEYS:
        if isinstance(body.get(key), dict):
            flat.update(body[key])
    return flat


def event_type(body: Mapping[str, Any]) -> str | None:
    """Return the event type with dots: 'cart_created', 'cart created' -> 'cart.created'."""
    for key in _EVENT_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"[\s_\-.]+", ".", value.strip().lower())
    return None


def require_event(body: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    """Return the event type; a missing one means the endpoint's own event."""
    event = event_type(body) or allowed[0]
    if event not in allowed:
        raise _bad(
            f"This endpoint takes the event{'s' if len(allowed) > 1 else ''} "
            f"{' or '.join(allowed)}, not '{event}'."
        )
    return event


def text(body: Mapping[str, Any], *keys: str) -> str | None:
    """Return the first non-empty text (or number) among keys."""
    for key in keys:
        value = body.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, str | int | Decimal) and str(value).strip():
            return str(value).strip()
    return None


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{key} must be an object.")
    return value


def reference_id(body: Mapping[str, Any]) -> str | None:
    """Return the sticky reference_id that names one cart across all three endpoints, if sent.

    The guide makes it something the merchant may return and Forter then passes on, so a
    request without one is not an error: the cart endpoint mints one (`mint_reference_id`).
    """
    ref = text(body, "reference_id", "referenceId", "cart_id")
    if ref is not None and len(ref) > 255:
        raise _bad("reference_id must be at most 255 characters.")
    return ref


def mint_reference_id() -> str:
    """Return a new reference id for a cart that arrived without one."""
    return "ref_" + secrets.token_hex(12)


def order_reference_id(body: Mapping[str, Any]) -> str:
    """Return the reference of an order.created that carries none: one per distinct body.

    Derived from the body (keys sorted, amounts as sent), so a retried order.created (same
    body, same payment token) finds the order its first attempt placed and is never charged
    twice.
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return "ref_order_" + digest[:24]


def _item_id(catalog: Catalog, raw: Mapping[str, Any], index: int) -> str:
    wanted = [text(raw, key) for key in ("variant_id", "product_id", "sku", "id")]
    for candidate in filter(None, wanted):
        if catalog.item(candidate) is not None:
            return candidate
        by_sku = next(
            (
                i
                for i in catalog.items.values()
                if i.variant is not None and i.variant.sku == candidate
            ),
            None,
        )
        if by_sku is not None:
            return by_sku.id
    named = next(filter(None, wanted), None)
    if named is None:
        raise _bad(f"items[{index}] needs a product_id.")
    product = next((p for p in catalog.products if p.id == named), None)
    if product is not None and product.variants:
        raise _bad(
            f"items[{index}].product_id '{named}' has variants; send one of "
            f"{', '.join(v.id for v in product.variants)} as product_id or variant_id."
        )
    raise _bad(
        f"items[{index}].product_id '{named}' is not sold here; use an id from the product feed."
    )


def _quantity(value: Any, index: int) -> int:
    if value is None:
        return 1
    try:
        number = Decimal(str(value)) if not isinstance(value, bool) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        raise _bad(f"items[{index}].quantity must be a whole number, got {_shown(value)}.")
    if not 1 <= number <= MAX_QUANTITY:
        raise _bad(
            f"items[{index}].quantity must be between 1 and {MAX_QUANTITY}, got {_shown(value)}."
        )
    return int(number)


def lines(catalog: Catalog, body: Mapping[str, Any]) -> tuple[CartLine, ...] | None:
    """Read items[] ({product_id, variant_id?, quantity}); None when the event carries none."""
    raw = body.get("items", body.get("line_items"))
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _bad("items must be an array of {product_id, quantity}.")
    if len(raw) > MAX_LINES:
        raise _bad(f"A cart holds at most {MAX_LINES} items.")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _bad(f"items[{index}] must be an object with product_id and quantity.")
        parsed.append(
            CartLine(_item_id(catalog, item, index), _quantity(item.get("quantity"), index))
        )
    return tuple(parsed)


def _region(value: str | None, country: str | None) -> str | None:
    if value is None:
        return None
    region = value.upper()
    prefix, sep, rest = region.partition("-")  # ISO 3166-2 "US-CA"
    if sep and rest and (country is None or prefix == country):
        return rest
    return region


def address(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Build the domain's address from recipient/address fields, or from region_id/country_id."""
    recipient = _object(body, "recipient")
    sources = [
        _object(recipient, "address"),
        recipient,
        _object(body, "shipping_address"),
        _object(body, "address"),
    ]
    source = next(
        (
            s
            for s in sources
            if text(
                s,
                "address1",
                "address_1",
                "line1",
                "line_one",
                "street",
                "city",
                "postal_code",
                "zip",
            )
        ),
        {},
    )
    country = text(source, "country_id", "country_code", "country") or text(
        body, "country_id", "country_code"
    )
    country = country.upper() if country else None
    region = _region(
        text(source, "region_id", "region_code", "state_code", "state", "region", "province")
        or text(body, "region_id", "region_code"),
        country,
    )
    name = text(source, "name", "full_name") or " ".join(
        filter(
            None, (text(source, "first_name", "firstName"), text(source, "last_name", "lastName"))
        )
    )
    fields = {
        "name": name or None,
        "line_one": text(source, "address1", "address_1", "line1", "line_one", "street"),
        "line_two": text(source, "address2", "address_2", "line2", "line_two"),
        "city": text(source, "city", "locality"),
        "state": region,
        "country": country,
        "postal_code": text(source, "postal_code", "zip", "zip_code", "postcode"),
    }
    parsed = {k: v for k, v in fields.items() if v}
    return parsed or None


def buyer(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Read the buyer from customer/account/recipient fields (email, phone, names)."""
    parsed: dict[str, str] = {}
    for source in (
        body,
        _object(body, "recipient"),
        _object(body, "account"),
        _object(body, "customer"),
    ):
        for ours, keys in (
            ("email", ("email",)),
            ("phone_number", ("phone", "phone_number")),
            ("first_name", ("first_name", "firstName")),
            ("last_name", ("last_name", "lastName")),
        ):
            value = text(source, *keys)
            if value:
                parsed[ours] = value
    return parsed or None


def coupon_codes(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Read `coupon` as a code, an object with a code, or a list of either."""
    raw = body.get("coupon", body.get("coupons", body.get("coupon_code")))
    if raw is None:
        return None
    raws = raw if isinstance(raw, list) else [raw]
    codes = []
    for value in raws:
        code = text(value, "code", "coupon_code") if isinstance(value, dict) else value
        if not isinstance(code, str):
            raise _bad('coupon must be a code like "TEN" (or {"code": "TEN"}).')
        codes.append(code)
    return tuple(c for c in codes if c.strip())


def session_input(catalog: Catalog, body: Mapping[str, Any]) -> SessionInput:
    """Turn a cart or order event into a SessionInput (absent fields stay as they were)."""
    recipient = _object(body, "recipient")
    addr = address(body)
    return SessionInput(
        lines=lines(catalog, body),
        buyer=buyer(body),
        fulfillment_details={"address": addr, **({"name": addr["name"]} if "name" in addr else {})}
        if addr
        else None,
        option_id=text(recipient, "shipping_id", "shipping_option_id")
        or text(body, "shipping_id", "shipping_option_id"),
        coupon_codes=coupon_codes(body),
        currency=text(body, "currency_id", "currency"),
    )


def amount(value: Any, name: str, currency: str) -> int:
    """Turn a decimal amount (29.99) into minor units, refusing sub-unit digits."""
    try:
        number = (
            Decimal(str(value))
            if isinstance(value, str | int | Decimal) and not isinstance(value, bool)
            else None
        )
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise _bad(f"{name} must be a decimal amount like 29.99, got {_shown(value)}.")
    places = exponent(currency)
    largest = Decimal(MAX_MINOR_UNITS).scaleb(-places)
    if abs(number) > largest:
        raise _bad(
            f"{name} is {_shown(value)}, more than this store can represent; amounts here are "
            f"at most {largest:f} {currency.upper()} (send the totals the cart endpoint returned)."
        )
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise _bad(f"{name} has more decimals than {currency.upper()} allows: {_shown(value)}.")
    return from_decimal(number, currency)


def expected_totals(body: Mapping[str, Any], currency: str) -> dict[str, int]:
    """Read the totals the orchestrator shows the buyer; `total` is required."""
    totals = _object(body, "totals")
    found = {
        name: totals[name]
        for name in ("subtotal", "discount", "shipping", "tax", "total")
        if totals.get(name) is not None
    }
    if "total" not in found:
        loose = body.get("total", body.get("total_amount", body.get("amount")))
        if loose is None:
            raise _bad(
                "totals.total is required on order.created: send the totals the cart "
                'endpoint returned, e.g. {"totals": {"total": 64.98}}.'
            )
        found["total"] = loose
    return {name: amount(value, f"totals.{name}", currency) for name, value in found.items()}


def credential(body: Mapping[str, Any]) -> PaymentCredential:
    """Read payment.token (or payment.card.token) and the card's non-secret details."""
    payment = _object(body, "payment")
    card = _object(payment, "card")
    token = text(payment, "token", "payment_token") or text(card, "token")
    if token is None:
        raise _bad("payment.token is required on order.created: the tokenized card to charge.")
    billing = (
        address({"address": _object(payment, "billing_address")})
        if payment.get("billing_address")
        else None
    )
    return PaymentCredential(
        token=token,
        instrument_type="card"
        if card or payment.get("type") in (None, "card")
        else str(payment.get("type")),
        credential_type="token",
        provider=text(payment, "provider", "gateway"),
        billing_address=billing,
        fields={k: v for k, v in payment.items() if isinstance(v, str)},
    )
