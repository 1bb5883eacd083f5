"""Render domain SessionViews as ACP 2026-04-17 CheckoutSession JSON (wire shapes only)."""

from __future__ import annotations

from typing import Any

from shop import clock
from shop.checkout import Message, SessionView, Status
from shop.pricing.quotes import Quote, QuoteLine
from shop.state import ShopState

PROTOCOL_VERSION = "2026-04-17"

_BUYER_FIELDS = ("first_name", "last_name", "full_name", "email", "phone_number", "customer_id")
_LINK_TYPES = (
    ("termsUrl", "terms_of_use", "Terms of use"),
    ("privacyUrl", "privacy_policy", "Privacy policy"),
    ("returnsUrl", "return_policy", "Return policy"),
    ("shippingUrl", "shipping_policy", "Shipping policy"),
    ("supportUrl", "support", "Support"),
)


def _total(type_: str, text: str, amount: int) -> dict[str, Any]:
    return {"type": type_, "display_text": text, "amount": amount}


def _line(line: QuoteLine, available: int | None) -> dict[str, Any]:
    item = line.item
    body: dict[str, Any] = {
        "id": line.id,
        "item": {"id": item.id, "name": item.title, "unit_amount": line.unit_amount},
        "quantity": line.quantity,
        "name": item.title,
        "unit_amount": line.unit_amount,
        "product_id": item.product.id,
        "availability_status": "in_stock"
        if available is None or available >= line.quantity
        else "out_of_stock",
        "totals": [
            _total("items_base_amount", "Base amount", line.base_amount),
            _total("discount", "Discount", line.discount),
            _total("subtotal", "Subtotal", line.subtotal),
            _total("tax", "Tax", line.tax),
            _total("total", "Total", line.total),
        ],
    }
    if item.product.description:
        body["description"] = item.product.description
    if item.image:
        body["images"] = [item.image]
    if item.variant:
        body["variant_id"] = item.variant.id
        if item.variant.sku:
            body["sku"] = item.variant.sku
        if item.variant.options:
            body["variant_options"] = [
                {"name": k, "value": v} for k, v in item.variant.options.items()
            ]
    if available is not None:
        body["available_quantity"] = max(available, 0)
    return body


def _options(quote: Quote) -> list[dict[str, Any]]:
    rendered = []
    for option in quote.options:
        body: dict[str, Any] = {
            "type": option.type,
            "id": option.id,
            "title": option.title,
            "totals": [_total("total", option.title, option.amount)],
        }
        if option.description:
            body["description"] = option.description
        if option.carrier:
            body["carrier"] = option.carrier
        if option.earliest:
            body["earliest_delivery_time"] = clock.iso_datetime(option.earliest)
        if option.latest:
            body["latest_delivery_time"] = clock.iso_datetime(option.latest)
        rendered.append(body)
    return rendered


def _totals(quote: Quote) -> list[dict[str, Any]]:
    totals = [_total("items_base_amount", "Item(s) total", quote.items_base)]
    if quote.discount:
        totals.append(_total("discount", "Discount", quote.discount))
    totals.append(_total("subtotal", "Subtotal", quote.subtotal))
    if quote.selected:
        totals.append(_total("fulfillment", quote.selected.title, quote.fulfillment))
    totals.append(_total("tax", "Tax", quote.tax))
    totals.append(_total("total", "Total", quote.total))
    return totals


def render_message(message: Message) -> dict[str, Any]:
    """Render a domain Message as an ACP MessageError / MessageWarning / MessageInfo."""
    body: dict[str, Any] = {
        "type": message.type,
        "content_type": "plain",
        "content": message.content,
    }
    if message.type != "info" and message.code:
        body["code"] = message.code
    if message.param:
        body["param"] = message.param
    return body


def _discounts(quote: Quote, codes: list[str]) -> dict[str, Any]:
    applied, rejected = [], []
    for outcome in quote.coupons:
        if outcome.applied and outcome.coupon:
            code = outcome.coupon.code
            coupon: dict[str, Any] = {"id": code.lower(), "name": code}
            if outcome.coupon.percent_off is not None:
                coupon["percent_off"] = float(outcome.coupon.percent_off)
            else:
                coupon["amount_off"] = outcome.coupon.amount_off
                coupon["currency"] = quote.currency
            applied.append(
                {
                    "id": f"disc_{outcome.coupon.code.lower()}",
                    "code": outcome.code,
                    "coupon": coupon,
                    "amount": outcome.amount,
                }
            )
        elif outcome.reason:
            reason = {
                "coupon_invalid": "discount_code_invalid",
                "coupon_expired": "discount_code_expired",
                "minimum_not_met": "discount_code_minimum_not_met",
            }[outcome.reason]
            rejected.append({"code": outcome.code, "reason": reason})
    return {"codes": codes, "applied": applied, "rejected": rejected}


def links(state: ShopState) -> list[dict[str, Any]]:
    """Return ACP links[] from config.json policies."""
    policies = state.settings.policies
    return [
        {"type": type_, "title": title, "url": policies[key]}
        for key, type_, title in _LINK_TYPES
        if policies.get(key)
    ]


def render_session(state: ShopState, view: SessionView) -> dict[str, Any]:
    """Return the ACP CheckoutSession (or CheckoutSessionWithOrder) body for a session."""
    quote = view.quote
    details = view.details
    body: dict[str, Any] = {
        "id": view.id,
        "protocol": {"version": PROTOCOL_VERSION},
        "capabilities": {"payment": {"handlers": state.provider.handlers(view.provider_order_id)}},
        "status": str(view.status),
        "currency": view.currency,
        "line_items": [_line(line, view.availability.get(line.item.id)) for line in quote.lines],
        "fulfillment_options": _options(quote),
        "totals": _totals(quote),
        "messages": [render_message(m) for m in view.messages],
        "links": links(state),
        "created_at": clock.iso(view.created_at),
        "updated_at": clock.iso(view.updated_at),
        "expires_at": clock.iso(view.expires_at),
    }
    buyer = {k: v for k, v in (details.get("buyer") or {}).items() if k in _BUYER_FIELDS}
    if buyer.get("email"):
        body["buyer"] = buyer
    if details.get("fulfillment_details"):
        body["fulfillment_details"] = details["fulfillment_details"]
    if quote.selected:
        body["selected_fulfillment_options"] = [
            {
                "type": quote.selected.type,
                "option_id": quote.selected.id,
                "item_ids": [line.id for line in quote.lines],
            }
        ]
    if details.get("coupons"):
        body["discounts"] = _discounts(quote, list(details["coupons"]))
    pending_3ds = details.get("authentication_metadata")
    if view.status == Status.READY and pending_3ds:  # ACP 2026-04-17 3-D Secure
        body["status"] = "authentication_required"
        body["authentication_metadata"] = pending_3ds
    if view.status == Status.COMPLETED and view.order_id:
        order: dict[str, Any] = {
            "id": view.order_id,
            "checkout_session_id": view.id,
            "permalink_url": view.permalink_url,
            "status": "confirmed",
        }
        body["order"] = order
    return body
