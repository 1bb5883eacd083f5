"""ACP 2026-01-30: today's request shapes; answers without what 2026-04-17 added.

Left out of the answer: a payment handler's display_name/display_order, an address's
`company`, a message's `resolution`, the order's `type` and its line items, fulfillments,
adjustments and totals, and an Error's `supported_versions`.
"""

from __future__ import annotations

from shop.api.acp_versions.adapter import (
    BEFORE_IDEMPOTENCY_SEP,
    Adapter,
    Body,
    error_body,
    pick,
)

VERSION = "2026-01-30"
_HANDLER_ADDED = ("display_name", "display_order")
_ORDER_FIELDS = (
    "id",
    "checkout_session_id",
    "order_number",
    "permalink_url",
    "status",
    "estimated_delivery",
    "confirmation",
    "support",
)
_ORDER_STATUSES = frozenset(("confirmed", "processing", "shipped", "delivered"))


def render_session(body: Body) -> Body:
    """Today's CheckoutSession as a 2026-01-30 CheckoutSession."""
    out = dict(body)
    out["protocol"] = {**body.get("protocol", {}), "version": VERSION}
    payment = body.get("capabilities", {}).get("payment")
    if payment and "handlers" in payment:
        handlers = [
            {k: v for k, v in h.items() if k not in _HANDLER_ADDED} for h in payment["handlers"]
        ]
        out["capabilities"] = {**body["capabilities"], "payment": {**payment, "handlers": handlers}}
    address = body.get("fulfillment_details", {}).get("address")
    if address and "company" in address:
        details = dict(body["fulfillment_details"])
        details["address"] = {k: v for k, v in address.items() if k != "company"}
        out["fulfillment_details"] = details
    out["messages"] = [
        {k: v for k, v in m.items() if k != "resolution"} for m in body.get("messages", [])
    ]
    out["totals"] = [t for t in body["totals"] if t["type"] != "amount_refunded"]
    if "order" in body:
        order = pick(body["order"], _ORDER_FIELDS)
        if order.get("status") not in _ORDER_STATUSES:
            order.pop("status", None)
        if "confirmation" in order:
            order["confirmation"] = {
                k: v for k, v in order["confirmation"].items() if k != "order_notes"
            }
        out["order"] = order
    return out


def render_error(body: Body) -> Body:
    """A flat Error without `supported_versions` (2026-04-17 added it)."""
    return error_body(body)


V2026_01_30 = Adapter(
    VERSION,
    session=render_session,
    error=render_error,
    error_statuses=BEFORE_IDEMPOTENCY_SEP,
)
