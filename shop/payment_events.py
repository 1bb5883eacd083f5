"""Provider webhook events applied to the checkout domain: state only moves forward.

Every handler is a conditional statement, so re-applying an event is a no-op; the event id
is recorded afterwards (unique), and a recorded id short-circuits later duplicates.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from shop import clock, metrics, stock
from shop.checkout import Message, Status, _notice, _release, mark_paid
from shop.db import CheckoutSession, ProviderEvent, db
from shop.payments import EventKind, PaymentEvent
from shop.state import ShopState

log = logging.getLogger("shop.payment_events")


def _lines(row: CheckoutSession) -> list[tuple[str, int]]:
    return [(li["item_id"], li["quantity"]) for li in json.loads(row.cart)["lines"]]


def apply_event(state: ShopState, event: PaymentEvent) -> str:
    """Apply one verified provider event; return what happened (for the log and the response)."""
    event_key = f"{state.provider.name}:{event.id}"
    if db.session.get(ProviderEvent, event_key) is not None:
        outcome = "duplicate"
    else:
        outcome = _apply(state, event)
        db.session.add(ProviderEvent(id=event_key, type=event.type, session_id=event.session_id,
                                     received_at=clock.epoch()))
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent delivery of the same event recorded it first
            db.session.rollback()
            outcome = "duplicate"
    metrics.inc("shop_webhook_events_total", outcome=outcome.split(":")[0])
    log.info("provider event %s (%s) session=%s: %s", event.id, event.type, event.session_id,
             outcome)
    return outcome


def _apply(state: ShopState, event: PaymentEvent) -> str:
    if event.kind == EventKind.IGNORED:
        return "ignored"
    if event.session_id is None:
        if event.kind == EventKind.PAID:
            log.error("PAYMENT WITHOUT CHECKOUT SESSION: %s payment %s (%s %s) carries no "
                      "checkout_session_id; it was made outside this store — reconcile it by hand",
                      state.provider.name, event.reference, event.amount, event.currency)
            return "paid_without_session"
        return "no_session"
    row = db.session.get(CheckoutSession, event.session_id)
    if row is None:
        log.error("provider event %s names session %s, which does not exist (purged?); payment "
                  "%s", event.id, event.session_id, event.reference)
        return "unknown_session"
    if event.kind == EventKind.PAID:
        return _paid(state, row, event)
    if event.kind == EventKind.FAILED:
        return _failed(state, row, event)
    return _disputed(state, row, event)


def _paid(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    if row.status == Status.COMPLETED:
        return "already_completed"
    if not row.stock_reserved:
        # Money arrived for a session that holds no stock (e.g. a payment the buyer made after
        # a decline). A paid order must not be lost: take the stock if it is there, and say
        # loudly when it is not.
        short = stock.reserve_stock(state.catalog, _lines(row))
        if short is not None:
            db.session.rollback()
            log.error("OVERSOLD: session %s was paid (%s) but '%s' is out of stock; the order "
                      "is still handed over — contact the buyer", row.id, event.reference, short)
        else:
            db.session.execute(update(CheckoutSession).where(CheckoutSession.id == row.id)
                               .values(stock_reserved=1))
            db.session.commit()
    amount = event.amount if event.amount is not None else (row.amount_paid or 0)
    if mark_paid(state, row.id, event.reference, amount):
        metrics.inc("shop_checkouts_completed_total", via="webhook")
        return "completed"
    return "already_completed"


def _failed(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    if row.status != Status.IN_PROGRESS:
        return f"ignored_in_status:{row.status}"  # a late failure never un-pays a session
    _release(state, row.id, _lines(row), Status.READY, _notice(Message(
        "error", event.message or "Your payment was declined. Please try a different payment "
        "method.", "payment_declined", "$.payment_data")))
    metrics.inc("shop_payment_declines_total", via="webhook")
    return "payment_failed"


def _disputed(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    from shop import delivery

    flagged = db.session.execute(
        update(CheckoutSession).where(CheckoutSession.id == row.id, CheckoutSession.flagged == 0)
        .values(flagged=1, updated_at=clock.epoch())
    ).rowcount == 1
    if flagged and row.order_payload:
        delivery.enqueue_order_flagged(state, row.id, json.loads(row.order_payload),
                                       event.reference)
    db.session.commit()
    if not flagged:
        return "already_flagged"
    log.error("DISPUTE on order %s (session %s, payment %s): review it before shipping",
              row.order_id, row.id, event.reference)
    delivery.schedule(state, row.id)
    return "flagged"
