"""The shapes that leave the shop: the merchant's order payload (DESIGN §5), built from a
session at the moment it is paid, and the ACP order event made from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shop import clock, fast_json
from shop.pricing.quotes import Quote, cart_of, line_id, price_cart
from shop.state import ShopState
from shop.storage.models import CheckoutSession

ACP_EVENT_TYPES = ("order_create", "order_update")
_ADDRESS_KEYS = ("name", "line_one", "line_two", "city", "state", "country", "postal_code")
_ACP_ADDRESS_REQUIRED = {"name", "line_one", "city", "state", "country", "postal_code"}


def order_payload(
    state: ShopState,
    row: CheckoutSession,
    *,
    reference: str | None = None,
    provider: str | None = None,
    quote: Quote | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the payload for a session's order, priced as the session stands now.

    `quote` is the cart's price when the caller has just made it (complete: the quote whose
    total was charged), so the cart is not priced a second time; `details` is `row.cart`
    decoded, when the caller holds it, so it is not decoded a second time.
    """
    if row.order_payload:
        return fast_json.loads(row.order_payload)
    if details is None:
        details = fast_json.loads(row.cart)
    address = (details.get("fulfillment_details") or {}).get("address")
    if quote is None:
        quote = price_cart(state.settings, state.catalog, cart_of(details), clock.now())
    order_id = f"order_{row.id}"
    totals = [
        {"type": "items_base_amount", "display_text": "Item(s) total", "amount": quote.items_base}
    ]
    if quote.discount:
        totals.append({"type": "discount", "display_text": "Discount", "amount": quote.discount})
    totals.append({"type": "subtotal", "display_text": "Subtotal", "amount": quote.subtotal})
    if quote.selected and quote.shippable:
        totals.append(
            {
                "type": "fulfillment",
                "display_text": quote.selected.title,
                "amount": quote.fulfillment,
            }
        )
    if quote.tax_applied:
        totals.append({"type": "tax", "display_text": "Tax", "amount": quote.tax})
    totals.append({"type": "total", "display_text": "Total", "amount": quote.total})
    fulfillment = None
    if quote.shippable and quote.selected:
        fulfillment = {
            "option": {
                "id": quote.selected.id,
                "title": quote.selected.title,
                "amount": quote.selected.amount,
            },
            "address": address,
        }
    return build_order_payload(
        order_id=order_id,
        session_id=row.id,
        permalink_url=state.settings.permalink_base + order_id,
        buyer=details.get("buyer") or {},
        currency=quote.currency,
        line_items=[
            {
                "id": line.id,
                "item_id": line.item.id,
                "title": line.item.title,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount,
                "tax": line.tax,
                "total": line.total,
            }
            for line in quote.lines
        ],
        totals=totals,
        fulfillment=fulfillment,
        payment={
            "provider": provider or row.payment_provider or state.provider.name,
            "reference": reference or row.payment_reference,
        },
    )


def minimal_order_payload(
    state: ShopState,
    row: CheckoutSession,
    *,
    reference: str | None,
    provider: str,
    amount: int,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a payload from the stored cart alone, for when pricing it again failed.

    The payment is final, so the order must still go out: items, quantities, buyer, address
    and the amount paid are known; per-line prices are sent as 0 and the `total` entry holds
    what was charged.
    """
    if details is None:
        details = fast_json.loads(row.cart)
    lines = []
    for index, line in enumerate(details.get("lines") or ()):
        item = state.catalog.item(line["item_id"])
        lines.append(
            {
                "id": line_id(index),
                "item_id": line["item_id"],
                "title": item.title if item else line["item_id"],
                "quantity": line["quantity"],
                "unit_amount": 0,
                "tax": 0,
                "total": 0,
            }
        )
    address = (details.get("fulfillment_details") or {}).get("address")
    option_id = details.get("option_id") or "unknown"
    order_id = f"order_{row.id}"
    return build_order_payload(
        order_id=order_id,
        session_id=row.id,
        permalink_url=state.settings.permalink_base + order_id,
        buyer=details.get("buyer") or {},
        currency=row.currency,
        line_items=lines,
        totals=[{"type": "total", "display_text": "Total paid", "amount": amount}],
        fulfillment={
            "option": {"id": option_id, "title": option_id, "amount": 0},
            "address": address,
        }
        if address
        else None,
        payment={
            "provider": provider,
            "reference": reference or row.payment_reference or "unknown",
        },
    )


def build_order_payload(
    *,
    order_id: str,
    session_id: str,
    permalink_url: str,
    buyer: Mapping[str, Any] | None,
    currency: str,
    line_items: Sequence[Mapping[str, Any]],
    totals: Sequence[Mapping[str, Any]],
    fulfillment: Mapping[str, Any] | None,
    payment: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the merchant's order payload (DESIGN §5; docs/order-payload.schema.json).

    It copies and never checks: it runs after the charge, where raising would strand a paid
    order. The tests hold its output to the schema instead.
    """
    lines = [
        {
            "id": str(li["id"]),
            "item_id": str(li["item_id"]),
            "title": str(li["title"]),
            "quantity": li["quantity"],
            "unit_amount": li["unit_amount"],
            "tax": li.get("tax", 0),
            "total": li["total"],
        }
        for li in line_items
    ]
    sums = [
        {"type": str(t["type"]), "display_text": str(t["display_text"]), "amount": t["amount"]}
        for t in totals
    ]
    return {
        "event": "order.created",
        "order": {
            "id": order_id,
            "checkout_session_id": session_id,
            "permalink_url": permalink_url,
        },
        "buyer": dict(buyer or {}),
        "currency": currency.lower(),
        "line_items": lines,
        "totals": sums,
        "fulfillment": None
        if fulfillment is None
        else {"option": dict(fulfillment["option"]), "address": dict(fulfillment["address"])},
        "payment": {"provider": str(payment["provider"]), "reference": str(payment["reference"])},
    }


def build_acp_order_event(
    event_type: str,
    order_payload: Mapping[str, Any],
    status: str,
    *,
    refund: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn a merchant payload into an ACP webhook body `{type, data: Order}`.

    Status `canceled` cancels every line and the fulfillment; `refund {id, amount,
    occurred_at, reason}` adds a refund adjustment and the `amount_refunded` total.
    """
    if event_type not in ACP_EVENT_TYPES:
        raise ValueError(f"ACP order event type must be one of {ACP_EVENT_TYPES}")
    info = order_payload["order"]
    lines = order_payload["line_items"]
    canceled = status == "canceled"
    data: dict[str, Any] = {
        "type": "order",
        "id": info["id"],
        "checkout_session_id": info["checkout_session_id"],
        "permalink_url": info["permalink_url"],
        "status": status,
        "line_items": [
            {
                "id": li["id"],
                "title": li["title"],
                "product_id": li["item_id"],
                "quantity": {
                    "ordered": li["quantity"],
                    "current": 0 if canceled else li["quantity"],
                    "fulfilled": 0,
                },
                "unit_price": li["unit_amount"],
                "subtotal": li["total"] - li["tax"],
                "status": "removed" if canceled else "processing",
            }
            for li in lines
        ],
        "totals": [dict(t) for t in order_payload["totals"]],
    }
    if refund is not None:
        data["adjustments"] = [
            {
                "id": str(refund["id"]),
                "type": "refund",
                "occurred_at": str(refund["occurred_at"]),
                "status": "completed",
                "amount": refund["amount"],
                "currency": str(order_payload["currency"]).lower(),
                "reason": str(refund["reason"]),
            }
        ]
        data["totals"].append(
            {"type": "amount_refunded", "display_text": "Refunded", "amount": refund["amount"]}
        )
    shipment = order_payload.get("fulfillment")
    fulfillment: dict[str, Any] = {
        "id": f"ful_{info['id']}",
        "type": "shipping" if shipment else "digital",
        "status": "canceled" if canceled else "pending",
        "line_items": [{"id": li["id"], "quantity": li["quantity"]} for li in lines],
    }
    destination = {
        k: v for k, v in ((shipment or {}).get("address") or {}).items() if k in _ADDRESS_KEYS and v
    }
    if destination.keys() >= _ACP_ADDRESS_REQUIRED:  # ACP's Address wants every part
        fulfillment["destination"] = destination
    data["fulfillments"] = [fulfillment]
    return {"type": event_type, "data": data}
