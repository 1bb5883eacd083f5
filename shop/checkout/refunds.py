"""Refunds on paid orders: a full refund at the provider cancels the order, once.

The merchant gets `order.canceled` and the agent platform an `order_update` with status
`canceled`. A partial refund changes nothing here (the order still ships; the merchant
refunded part of it on purpose) and is only logged. Stock is not given back: whether the goods
return to the shelf is the merchant's call (`flask --app app stock`).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from shop import fast_json, orders
from shop.state import ShopState
from shop.storage import transaction
from shop.storage.models import CheckoutSession

log = logging.getLogger("shop.refunds")


def cancel_refunded_order(
    state: ShopState, session_id: str, reference: str | None, amount_refunded: int
) -> str:
    """Cancel a paid session's order when `amount_refunded` (cumulative) covers what was paid.

    Return what happened: canceled, already_canceled, partial_refund or not_paid. It commits
    the caller's transaction with the order.canceled rows (so a provider event recorded in it
    commits with them); when nothing changes it leaves the transaction to the caller.
    """
    row = transaction.execute(
        select(
            CheckoutSession.order_id, CheckoutSession.order_payload, CheckoutSession.amount_paid
        ).where(CheckoutSession.id == session_id)
    ).one_or_none()
    if row is None or not row.order_payload:
        log.warning(
            "refund of %s on payment %s for session %s, which has no paid order here; "
            "nothing to cancel",
            amount_refunded,
            reference,
            session_id,
        )
        return "not_paid"
    paid = row.amount_paid or 0
    if amount_refunded < paid:
        log.warning(
            "partial refund on order %s (session %s, payment %s): %d of %d refunded; "
            "the order stands",
            row.order_id,
            session_id,
            reference,
            amount_refunded,
            paid,
        )
        return "partial_refund"
    queued = orders.enqueue_order_canceled(
        state,
        session_id,
        fast_json.loads(row.order_payload),
        "refunded",
        reference,
        amount_refunded,
    )
    transaction.commit()
    if not queued:
        return "already_canceled"
    log.warning(
        "ORDER CANCELED: order %s (session %s) was fully refunded (%d, payment %s); do not ship it",
        row.order_id,
        session_id,
        amount_refunded,
        reference,
    )
    return "canceled"  # order.canceled goes out on the hand-off thread once committed
