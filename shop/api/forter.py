"""Forter agentic orchestration: POST /api/account, /api/cart and /api/checkout.

Thin: authenticate, parse the event (shop/api/forter_parse.py), call the checkout domain
through shop/forter.py, render amounts as DECIMAL major units (29.99) — the only surface
that does. Errors use the Forter shape {success: false, error_code, error_message}. There is
no Idempotency-Key layer here: Forter's retries are made safe by the sticky reference_id.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, request

from shop.api import forter_parse as parse
from shop.api.acp import json_response
from shop.checkout import SessionView, Status, forter
from shop.config.settings import Settings
from shop.errors import InvalidRequestError, ShopError, render_forter_error
from shop.money import from_decimal, to_decimal
from shop.security import bearer_token, constant_time_equals, hmac_sha256_hex
from shop.state import get_state

bp = Blueprint("forter", __name__, url_prefix="/api")
log = logging.getLogger("shop.forter")

SECRET_ENV = "FORTER_WEBHOOK_SECRET"
DEMO_SECRET = "demo"
CART_EVENTS = ("cart.created", "cart.updated")
ORDER_EVENTS = ("order.created",)
# Codes the orchestrator acts on; every other client mistake is invalid_request.
_KEPT_CODES = {
    "unauthorized",
    "totals_mismatch",
    "inventory_unavailable",
    "payment_declined",
    "payment_pending",
    "payment_provider_unavailable",
    "not_configured",
    "internal_error",
    "reference_contention",
}


# ---------------------------------------------------------------- auth


def signature_header(store_name: str) -> str:
    """Return the HMAC header name for a store: 'Harbor Goods' -> 'harbor-goods-signature'."""
    return "-".join(store_name.lower().split()) + "-signature"


def forter_secret(settings: Settings) -> str | None:
    """Return FORTER_WEBHOOK_SECRET; in demo mode an unset one is the documented 'demo'."""
    return settings.secret(SECRET_ENV) or (DEMO_SECRET if settings.demo_mode else None)


def _unauthorized(message: str) -> ShopError:
    return ShopError(
        401, "invalid_request", "unauthorized", message, headers={"WWW-Authenticate": "Bearer"}
    )


@bp.before_request
def _authenticate() -> None:
    settings = get_state().settings
    if not (settings.forter_bearer or settings.forter_hmac):
        log.warning(
            "Forter endpoints are open: config.json forter.bearer and forter.hmac are both false"
        )
        return
    secret = forter_secret(settings)
    if secret is None:
        log.error("%s is not set; every Forter request is refused", SECRET_ENV)
        raise ShopError(
            503,
            "processing_error",
            "not_configured",
            f"The store has not set {SECRET_ENV}, so it cannot verify Forter "
            "requests; the merchant must export it and restart.",
        )
    if settings.forter_bearer:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise _unauthorized(f"Send 'Authorization: Bearer <{SECRET_ENV}>'.")
        if not constant_time_equals(token, secret):
            raise _unauthorized(f"The bearer token is not this store's {SECRET_ENV}.")
    if settings.forter_hmac:
        name = signature_header(settings.store_name)
        given = request.headers.get(name, "").strip()
        if not given:
            raise _unauthorized(
                f"Send the header '{name}: hmac-sha256=<hex HMAC-SHA256 of the "
                f"raw body keyed with {SECRET_ENV}>'."
            )
        scheme, sep, digest = given.partition("=")
        if not sep or scheme.strip().lower() != "hmac-sha256":
            raise _unauthorized(f"The {name} header must look like 'hmac-sha256=<hex>'.")
        expected = hmac_sha256_hex(secret, request.get_data(cache=True))
        if not constant_time_equals(digest.strip().lower(), expected):
            raise _unauthorized(
                f"The {name} header does not match the body: sign the exact "
                f"raw bytes with {SECRET_ENV}."
            )


@bp.errorhandler(ShopError)
def _forter_error(exc: ShopError) -> Response:
    """Render in the Forter shape, folding client mistakes into the guide's codes."""
    if exc.code == "payment_provider_unavailable":
        exc = ShopError(503, exc.type, exc.code, exc.message, headers=exc.headers)
    elif exc.code not in _KEPT_CODES:
        status = 409 if exc.status == 405 else exc.status  # a closed cart: a conflict here
        if status < 500:
            exc = ShopError(status, exc.type, "invalid_request", exc.message, headers=exc.headers)
    return render_forter_error(exc)


# ---------------------------------------------------------------- rendering


def _number(value: Decimal) -> float | int:
    """Return a JSON number that prints exactly as the Decimal (29.99 stays 29.99)."""
    if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:  # only past ~15 significant digits
        raise ValueError(f"amount {value} cannot be sent exactly as a JSON number")
    return number


def _money(amount: int, currency: str) -> float | int:
    return _number(to_decimal(amount, currency))


def _unit_after_discount(subtotal: int, quantity: int, currency: str) -> float | int:
    unit = to_decimal(subtotal, currency) / quantity
    return _money(from_decimal(unit, currency), currency)


# Domain messages that name ACP fields, said in this surface's field names.
_SAY_ON_FORTER = {
    "missing": "A street address is needed for physical items; send recipient.address "
    "with address1, city, region_id, postal_code and country_id.",
}


def _street(view: SessionView) -> str | None:
    return ((view.details.get("fulfillment_details") or {}).get("address") or {}).get("line_one")


def render_cart(reference_id: str, view: SessionView, event: str) -> dict[str, Any]:
    """Return the cart answer: items, shipping_options and totals in decimal major units."""
    quote, currency = view.quote, view.currency
    left = view.availability
    items = [
        {
            "product_id": line.item.id,
            "title": line.item.title,
            "quantity": line.quantity,
            "price": _money(line.unit_amount, currency),
            "effective_price": _unit_after_discount(line.subtotal, line.quantity, currency),
            "subtotal": _money(line.base_amount, currency),
            "available": left.get(line.item.id) is None or left[line.item.id] >= line.quantity,
        }
        for line in quote.lines
    ]
    options = [
        {
            "id": o.id,
            "title": o.title,
            "description": o.description,
            "price": _money(o.amount, currency),
        }
        for o in quote.options
    ]
    coupons = [
        {
            "code": c.code,
            "applied": c.applied,
            "amount": _money(c.amount, currency),
            **({"reason": c.reason} if c.reason else {}),
        }
        for c in quote.coupons
    ]
    messages = [
        {"code": m.code, "message": _SAY_ON_FORTER.get(m.code or "", m.content)}
        for m in view.messages
        if m.type == "error"
    ]
    if quote.shippable and not _street(view) and all(m["code"] != "missing" for m in messages):
        messages.append({"code": "missing", "message": _SAY_ON_FORTER["missing"]})
    return {
        "success": True,
        "event": event,
        "reference_id": reference_id,
        "currency_id": currency.upper(),
        "items": items,
        "shipping_options": options,
        "selected_shipping_id": quote.selected.id if quote.selected else None,
        "coupons": coupons,
        "totals": {
            name: _money(value, currency) for name, value in forter.totals_of(quote).items()
        },
        "ready_for_checkout": view.status == Status.READY
        and (not quote.shippable or bool(_street(view))),
        "messages": messages,
    }


def _order_answer(reference_id: str, view: SessionView) -> Response:
    """Turn the session after order.created into {success, order_id} or a Forter error."""
    if view.status == Status.COMPLETED:
        return json_response(
            {
                "success": True,
                "order_id": view.order_id,
                "reference_id": reference_id,
                "status": "completed",
            }
        )
    if view.status == Status.IN_PROGRESS:
        raise ShopError(
            409,
            "processing_error",
            "payment_pending",
            f"The payment for reference_id '{reference_id}' is still being "
            "confirmed by the provider; retry order.created shortly (it will not "
            "charge again).",
            headers={"Retry-After": "5"},
        )
    codes = {m.code: m for m in view.messages if m.type == "error"}
    for code, (status, ours) in {
        "payment_declined": (402, "payment_declined"),
        "requires_3ds": (402, "payment_declined"),
        "out_of_stock": (409, "inventory_unavailable"),
    }.items():
        if code in codes:
            raise ShopError(status, "invalid_request", ours, codes[code].content)
    first = next(iter(codes.values()), None)
    raise ShopError(
        409 if view.status == Status.EXPIRED else 400,
        "invalid_request",
        "invalid_request",
        first.content
        if first
        else f"The cart for reference_id '{reference_id}' is not ready for checkout.",
    )


# ---------------------------------------------------------------- routes


@bp.post("/account")
def account() -> Response:
    """Look up the buyer: blocked (blockedBuyers), active (a returning buyer) or not_found.

    Non-fatal by contract: a body this endpoint cannot read answers not_found, never an error,
    so a lookup can never stop the orchestrator's flow (auth failures still answer 401).
    """
    state = get_state()
    try:
        body = parse.envelope(request.get_data(cache=True))
        ref = parse.reference_id(body)
        buyer = parse.buyer(body) or {}
    except ShopError as exc:
        log.info("account lookup answered not_found: %s", exc.message)
        return json_response({"success": True, "status": "not_found"})
    key = forter_secret(state.settings) or f"shop-account-id:{state.settings.store_url}"
    status, account_id = forter.account_status(
        state, buyer.get("email"), buyer.get("phone_number"), key
    )
    answer: dict[str, Any] = {"success": True, "status": status}
    if account_id is not None:
        answer["account_id"] = account_id
    if ref is not None:
        answer["reference_id"] = ref
    return json_response(answer)


@bp.post("/cart")
def cart() -> Response:
    """cart.created / cart.updated: price the reference's cart through the checkout domain."""
    state = get_state()
    body = parse.envelope(request.get_data(cache=True))
    event = parse.require_event(body, CART_EVENTS)
    ref = parse.reference_id(body) or parse.mint_reference_id()  # returned; later calls carry it
    view = forter.upsert_cart(state, ref, parse.session_input(state.catalog, body))
    return json_response(render_cart(ref, view, event))


@bp.post("/checkout")
def place_order() -> Response:
    """order.created: check the totals, charge payment.token once, answer the order id."""
    state = get_state()
    body = parse.envelope(request.get_data(cache=True))
    parse.require_event(body, ORDER_EVENTS)
    ref = parse.reference_id(body)
    if ref is None:
        if body.get("items", body.get("line_items")) is None:
            raise InvalidRequestError(
                "invalid_request",
                "order.created needs the cart: send the reference_id the cart endpoint "
                "returned, or the items (with recipient and payment) to price and charge "
                "in this one call.",
                "reference_id",
            )
        ref = parse.order_reference_id(body)  # a retry of the same body finds its order
    existing = forter.cart_view(state, ref)
    if existing is not None and existing.status == Status.COMPLETED:
        return _order_answer(ref, existing)  # a retry: same order id, nothing charged
    view = forter.place_order(
        state,
        ref,
        parse.session_input(state.catalog, body),
        parse.expected_totals(body, state.settings.currency),
        parse.credential(body),
    )
    return _order_answer(ref, view)


__all__ = ["bp", "render_cart", "signature_header"]
