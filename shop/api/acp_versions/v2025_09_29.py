"""ACP 2025-09-29: `items`, `fulfillment_address`, `fulfillment_option_id`, `payment_provider`.

Payment data comes as {token, provider} (read by acp_parse as it is); no protocol block,
no capabilities, no discounts; options carry subtotal/tax/total integers; links are
terms_of_use, privacy_policy and seller_shop_policies.
"""

from __future__ import annotations

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

VERSION = "2025-09-29"
_STATUSES = frozenset(
    ("not_ready_for_payment", "ready_for_payment", "completed", "canceled", "in_progress")
)
_LINKS = {
    "terms_of_use": "terms_of_use",
    "privacy_policy": "privacy_policy",
    "return_policy": "seller_shop_policies",
    "shipping_policy": "seller_shop_policies",
}
_OPTION = "$.selected_fulfillment_options"
# Where today's request paths point in this version's request (the first match wins).
REQUEST_PATHS = (
    ("$.line_items", "$.items"),
    ("$.fulfillment_details.address", "$.fulfillment_address"),
    ("$.fulfillment_details", "$.fulfillment_address"),
    (f"{_OPTION}[0].option_id", "$.fulfillment_option_id"),
    (_OPTION, "$.fulfillment_option_id"),
)
# Where a message's path points in this version's session (line_items keeps its name).
SESSION_PATHS = REQUEST_PATHS[1:]


def read_request(body: Body) -> Body:
    """A 2025-09-29 create/update/complete body in today's shapes."""
    body = old_request_items(body)
    if "fulfillment_address" in body or "fulfillment_option_id" in body:
        body = dict(body)
        address = body.pop("fulfillment_address", None)
        if address is not None and "fulfillment_details" not in body:
            details: Body = {"address": address}
            if isinstance(address, dict) and isinstance(address.get("name"), str):
                details["name"] = address["name"]
            body["fulfillment_details"] = details
        option_id = body.pop("fulfillment_option_id", None)
        if option_id is not None and "selected_fulfillment_options" not in body:
            body["selected_fulfillment_options"] = [{"option_id": option_id}]
    return body


def option(option: Body) -> Body:
    """A fulfillment option with subtotal/tax/total integers (2025-09-29 and 2025-12-12)."""
    amount = option["totals"][0]["amount"]
    out = pick(option, ("type", "id", "title"))
    if option.get("description"):
        out["subtitle"] = option["description"]
    if option["type"] == "shipping":
        out.update(pick(option, ("carrier", "earliest_delivery_time", "latest_delivery_time")))
    out.update({"subtotal": amount, "tax": 0, "total": amount})
    return out


def render_session(body: Body) -> Body:
    """Today's CheckoutSession as a 2025-09-29 CheckoutSession."""
    out: Body = {
        "id": body["id"],
        "status": old_status(body["status"], _STATUSES),
        "currency": body["currency"],
    }
    if "buyer" in body:
        out["buyer"] = old_buyer(body["buyer"])
    if card_handler(body):
        out["payment_provider"] = {"provider": "stripe", "supported_payment_methods": ["card"]}
    out["line_items"] = [old_line(line, described=False) for line in body["line_items"]]
    address = body.get("fulfillment_details", {}).get("address")
    if address:
        out["fulfillment_address"] = old_address(address)
    out["fulfillment_options"] = [option(o) for o in body["fulfillment_options"]]
    if body.get("selected_fulfillment_options"):
        out["fulfillment_option_id"] = body["selected_fulfillment_options"][0]["option_id"]
    out["totals"] = old_totals(body["totals"])
    out["messages"] = old_messages(body["messages"], SESSION_PATHS)
    out["links"] = old_links(body["links"], _LINKS)
    if "order" in body:
        out["order"] = pick(body["order"], ("id", "checkout_session_id", "permalink_url"))
    return out


def render_error(body: Body) -> Body:
    """A flat Error with this version's request paths."""
    return error_body(body, REQUEST_PATHS)


V2025_09_29 = Adapter(VERSION, read_request, render_session, render_error, BEFORE_IDEMPOTENCY_SEP)
