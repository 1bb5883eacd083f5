"""Build the merchant's order payload (DESIGN §5) from a session at the moment it is paid."""

from __future__ import annotations

import json
from typing import Any

from shop import clock
from shop.db import CheckoutSession
from shop.pricing import Cart, CartLine, line_id, price_cart
from shop.state import ShopState


def order_payload(state: ShopState, row: CheckoutSession, *, reference: str | None = None,
                  provider: str | None = None) -> dict[str, Any]:
    """Return the payload for a session's order, priced as the session stands now."""
    from shop.orders import build_order_payload

    if row.order_payload:
        return json.loads(row.order_payload)
    details = json.loads(row.cart)
    address = (details.get("fulfillment_details") or {}).get("address")
    cart = Cart(tuple(CartLine(li["item_id"], li["quantity"]) for li in details["lines"]),
                address, details.get("option_id"), tuple(details.get("coupons") or ()))
    quote = price_cart(state.settings, state.catalog, cart, clock.now())
    order_id = f"order_{row.id}"
    totals = [{"type": "items_base_amount", "display_text": "Item(s) total",
               "amount": quote.items_base}]
    if quote.discount:
        totals.append({"type": "discount", "display_text": "Discount", "amount": quote.discount})
    totals.append({"type": "subtotal", "display_text": "Subtotal", "amount": quote.subtotal})
    if quote.selected and quote.shippable:
        totals.append({"type": "fulfillment", "display_text": quote.selected.title,
                       "amount": quote.fulfillment})
    if quote.tax_applied:
        totals.append({"type": "tax", "display_text": "Tax", "amount": quote.tax})
    totals.append({"type": "total", "display_text": "Total", "amount": quote.total})
    fulfillment = None
    if quote.shippable and quote.selected:
        fulfillment = {"option": {"id": quote.selected.id, "title": quote.selected.title,
                                  "amount": quote.selected.amount},
                       "address": address}
    return build_order_payload(
        order_id=order_id,
        session_id=row.id,
        permalink_url=state.settings.permalink_base + order_id,
        buyer=details.get("buyer") or {},
        currency=quote.currency,
        line_items=[{"id": line.id, "item_id": line.item.id, "title": line.item.title,
                     "quantity": line.quantity, "unit_amount": line.unit_amount,
                     "tax": line.tax, "total": line.total} for line in quote.lines],
        totals=totals,
        fulfillment=fulfillment,
        payment={"provider": provider or row.payment_provider or state.provider.name,
                 "reference": reference or row.payment_reference},
    )


def minimal_order_payload(state: ShopState, row: CheckoutSession, *, reference: str | None,
                          provider: str, amount: int) -> dict[str, Any]:
    """Return a payload from the stored cart alone, for when pricing it again failed.

    The payment is final, so the order must still go out: items, quantities, buyer, address
    and the amount paid are known; per-line prices are sent as 0 and the `total` entry holds
    what was charged.
    """
    from shop.orders import build_order_payload

    details = json.loads(row.cart)
    lines = []
    for index, line in enumerate(details.get("lines") or ()):
        item = state.catalog.item(line["item_id"])
        lines.append({"id": line_id(index), "item_id": line["item_id"],
                      "title": item.title if item else line["item_id"],
                      "quantity": line["quantity"], "unit_amount": 0, "tax": 0, "total": 0})
    address = (details.get("fulfillment_details") or {}).get("address")
    option_id = details.get("option_id") or "unknown"
    order_id = f"order_{row.id}"
    return build_order_payload(
        order_id=order_id, session_id=row.id,
        permalink_url=state.settings.permalink_base + order_id,
        buyer=details.get("buyer") or {}, currency=row.currency, line_items=lines,
        totals=[{"type": "total", "display_text": "Total paid", "amount": amount}],
        fulfillment={"option": {"id": option_id, "title": option_id, "amount": 0},
                     "address": address} if address else None,
        payment={"provider": provider,
                 "reference": reference or row.payment_reference or "unknown"},
    )
