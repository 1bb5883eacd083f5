"""ACP 2025-12-12 and 2026-01-16: `items`, `fulfillment_details`, typed selected options.

`selected_fulfillment_options` is [{type, shipping: {option_id, item_ids}}] (or `digital`);
`payment_provider` lists card networks (2026-01-16 adds the merchant id); 2026-01-16's
fulfillment options carry a `totals` list where 2025-12-12 has subtotal/tax/total integers.
"""

from __future__ import annotations

from typing import Any

from shop.api.acp_versions import v2025_09_29
from shop.api.acp_versions.adapter import (
    BEFORE_IDEMPOTENCY_SEP,
    Adapter,
    Body,
    card_handler,
    error_body,
    old_address,
    old_buyer,
    old_line,
    old_links,
    old_messages,
    old_request_items,
    old_status,
    old_totals,
    pick,
)

_STATUSES = frozenset(
    (
        "not_ready_for_payment",
        "authentication_required",
        "ready_for_payment",
        "completed",
        "canceled",
        "in_progress",
    )
)
_LINKS = {t: t for t in ("terms_of_use", "privacy_policy", "return_policy")}
_NETWORKS = ("amex", "discover", "mastercard", "visa")
_OPTION = "$.selected_fulfillment_options[0].option_id"
REQUEST_PATHS = (
    ("$.line_items", "$.items"),
    (_OPTION, "$.selected_fulfillment_options[0].shipping.option_id"),
)
SESSION_PATHS = REQUEST_PATHS[1:]


def _flat_option(selected: Any) -> Any:
    """{type, shipping: {option_id, item_ids}} -> today's {type, option_id, item_ids}."""
    if not isinstance(selected, dict) or "option_id" in selected:
        return selected
    inner = selected.get(selected.get("type")) if isinstance(selected.get("type"), str) else None
    if inner is None:
        inner = selected.get("shipping", selected.get("digital"))
    if not isinstance(inner, dict):
        return selected
    flat = {k: v for k, v in selected.items() if k not in ("shipping", "digital")}
    flat.update(inner)
    return flat


def read_request(body: Body) -> Body:
    """A 2025-12-12 / 2026-01-16 create/update/complete body in today's shapes."""
    body = old_request_items(body)
    selected = body.get("selected_fulfillment_options")
    if isinstance(selected, list):
        body = dict(body)
        body["selected_fulfillment_options"] = [_flat_option(s) for s in selected]
    return body


def _payment_provider(body: Body, merchant_id: bool) -> Body | None:
    handler = card_handler(body)
    if handler is None:
        return None
    config = handler.get("config", {})
    brands = [b for b in config.get("accepted_brands", _NETWORKS) if b in _NETWORKS]
    provider: Body = {"provider": "stripe"}
    if merchant_id:
        provider["merchant_id"] = str(config.get("merchant_id", ""))
    provider["supported_payment_methods"] = [{"type": "card", "supported_card_networks": brands}]
    return provider


def _option_with_totals(option: Body) -> Body:
    out = pick(option, ("type", "id", "title"))
    if option["type"] == "shipping":
        out.update(pick(option, ("carrier", "earliest_delivery_time", "latest_delivery_time")))
    out["totals"] = old_totals(option["totals"])
    return out


def _details(details: Body) -> Body:
    out = pick(details, ("name", "phone_number", "email"))
    if details.get("address"):
        out["address"] = old_address(details["address"])
    return out


def _renderer(option_totals: bool, merchant_id: bool):
    def render_session(body: Body) -> Body:
        """Today's CheckoutSession in this version's shapes."""
        out: Body = {
            "id": body["id"],
            "status": old_status(body["status"], _STATUSES),
            "currency": body["currency"],
        }
        if "buyer" in body:
            out["buyer"] = old_buyer(body["buyer"])
        provider = _payment_provider(body, merchant_id)
        if provider:
            out["payment_provider"] = provider
        out["line_items"] = [old_line(line, described=True) for line in body["line_items"]]
        if body.get("fulfillment_details"):
            out["fulfillment_details"] = _details(body["fulfillment_details"])
        render_option = _option_with_totals if option_totals else v2025_09_29.option
        out["fulfillment_options"] = [render_option(o) for o in body["fulfillment_options"]]
        if body.get("selected_fulfillment_options"):
            out["selected_fulfillment_options"] = [
                {"type": s["type"], s["type"]: pick(s, ("option_id", "item_ids"))}
                for s in body["selected_fulfillment_options"]
            ]
        out["totals"] = old_totals(body["totals"])
        out["messages"] = old_messages(body["messages"], SESSION_PATHS)
        out["links"] = old_links(body["links"], _LINKS)
        if "order" in body:
            out["order"] = pick(body["order"], ("id", "checkout_session_id", "permalink_url"))
        return out

    return render_session


def render_error(body: Body) -> Body:
    """A flat Error with this version's request paths."""
    return error_body(body, REQUEST_PATHS)


V2025_12_12 = Adapter(
    "2025-12-12", read_request, _renderer(False, False), render_error, BEFORE_IDEMPOTENCY_SEP
)
V2026_01_16 = Adapter(
    "2026-01-16", read_request, _renderer(True, True), render_error, BEFORE_IDEMPOTENCY_SEP
)
