"""Provider webhook events applied to the checkout domain: state only moves forward.

Every handler is a conditional statement, so re-applying an event is a no-op; the event id
is recorded afterwards (unique), and a recorded id short-circuits later duplicates.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select, update
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
        db.session.add(
            ProviderEvent(
                id=event_key,
                type=event.type,
                session_id=event.session_id,
                received_at=clock.epoch(),
            )
        )
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent delivery of the same event recorded it first
            db.session.rollback()
            outcome = "duplicate"
    metrics.inc("shop_webhook_events_total", outcome=outcome.split(":")[0])
    log.info(
        "provider event %s (%s) session=%s: %s", event.id, event.type, event.session_id, outcome
    )
    return outcome


def _apply(state: ShopState, event: PaymentEvent) -> str:
    if event.kind == EventKind.IGNORED:
        return "ignored"
    row = _session_for(event)
    if row is not None:
        if event.kind == EventKind.PAID:
            return _paid(state, row, event)
        if event.kind == EventKind.FAILED:
            return _failed(state, row, event)
        return _disputed(state, row, event)
    if event.session_id is not None:
        log.error(
            "provider event %s names session %s, which does not exist (purged?); payment %s",
            event.id,
            event.session_id,
            event.reference,
        )
        return "unknown_session"
    if event.kind == EventKind.PAID:
        log.error(
            "PAYMENT WITHOUT CHECKOUT SESSION: %s payment %s (%s %s) carries no "
            "checkout_session_id; it was made outside this store — reconcile it by hand",
            state.provider.name,
            event.reference,
            event.amount,
            event.currency,
        )
        return "paid_without_session"
    if event.kind == EventKind.DISPUTED:
        log.error(
            "DISPUTE on %s payment %s, which matches no checkout session of this store; "
            "review it in the provider's dashboard",
            state.provider.name,
            event.reference,
        )
    return "no_session"


def _session_for(event: PaymentEvent) -> CheckoutSession | None:
    """Find the event's session by its checkout_session_id, else by the payment it names."""
    if event.session_id is not None:
        return db.session.get(CheckoutSession, event.session_id)
    if not event.reference:
        return None
    # Stripe disputes name only the PaymentIntent; complete stored it as payment_reference.
    return db.session.execute(
        select(CheckoutSession)
        .where(CheckoutSession.payment_reference == event.reference)
        .order_by(CheckoutSession.created_at)
        .limit(1)
    ).scalar_one_or_none()


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
            log.error(
                "OVERSOLD: session %s was paid (%s) but '%s' is out of stock; the order "
                "is still handed over — contact the buyer",
                row.id,
                event.reference,
                short,
            )
        else:
            db.session.execute(
                update(CheckoutSession).where(CheckoutSession.id == row.id).values(stock_reserved=1)
            )
            db.session.commit()
    mismatch = _mismatch(state, row, event)
    amount = event.amount if event.amount is not None else (row.amount_paid or 0)
    if not mark_paid(state, row.id, event.reference, amount):
        return "already_completed"
    metrics.inc("shop_checkouts_completed_total", via="webhook")
    if mismatch is None:
        return "completed"
    # The money was taken, so the order still goes out, but flagged: the merchant decides
    # between shipping, charging the difference and refunding (docs/decisions.md, Payments).
    _flag(
        state,
        row.id,
        "amount_mismatch",
        event.reference,
        {"amount_paid": event.amount, "currency_paid": event.currency},
    )
    return "completed_amount_mismatch"


def _mismatch(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str | None:
    """Say how the paid amount differs from the session's total, or None when it does not."""
    from shop.order_payload import order_payload

    if event.amount is None:
        return None  # the event does not say (the test provider): nothing to compare
    try:
        totals = order_payload(state, row)["totals"]
        expected = next(t["amount"] for t in totals if t["type"] == "total")
    except Exception:  # the cart cannot be priced any more; mark_paid logs that loudly
        return None
    paid_currency = (event.currency or row.currency).lower()
    if event.amount == expected and paid_currency == row.currency.lower():
        return None
    problem = (
        f"{state.provider.name} payment {event.reference} paid {event.amount} "
        f"{paid_currency} but session {row.id} totals {expected} {row.currency}"
    )
    log.error(
        "AMOUNT MISMATCH: %s; the order is handed over FLAGGED for review — refund or "
        "collect the difference before shipping",
        problem,
    )
    return problem


def _failed(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    if row.status != Status.IN_PROGRESS:
        return f"ignored_in_status:{row.status}"  # a late failure never un-pays a session
    _release(
        state,
        row.id,
        _lines(row),
        Status.READY,
        _notice(
            Message(
                "error",
                event.message
                or "Your payment was declined. Please try a different payment method.",
                "payment_declined",
                "$.payment_data",
            )
        ),
    )
    metrics.inc("shop_payment_declines_total", via="webhook")
    return "payment_failed"


def _disputed(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    if not _flag(state, row.id, "dispute", event.reference):
        log.error(
            "DISPUTE on order %s (session %s, payment %s), which was already flagged for review",
            row.order_id,
            row.id,
            event.reference,
        )
        return "already_flagged"
    log.error(
        "DISPUTE on order %s (session %s, payment %s): review it before shipping",
        row.order_id,
        row.id,
        event.reference,
    )
    return "flagged"


def _flag(
    state: ShopState,
    session_id: str,
    reason: str,
    reference: str | None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Flag a session for review and queue order.flagged once; False when it was flagged."""
    from shop import delivery

    flagged = (
        db.session.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == session_id, CheckoutSession.flagged == 0)
            .values(flagged=1, updated_at=clock.epoch())
        ).rowcount
        == 1
    )
    payload = db.session.execute(
        select(CheckoutSession.order_payload).where(CheckoutSession.id == session_id)
    ).scalar_one_or_none()
    if flagged and payload:
        if reason == "dispute":
            delivery.enqueue_order_flagged(state, session_id, json.loads(payload), reference)
        else:
            _enqueue_flagged(
                state, session_id, json.loads(payload), reason, reference, details or {}
            )
    db.session.commit()
    if flagged:
        delivery.schedule(state, session_id)
    return flagged


def _enqueue_flagged(
    state: ShopState,
    session_id: str,
    payload: dict[str, Any],
    reason: str,
    reference: str | None,
    details: dict[str, Any],
) -> None:
    # delivery.enqueue_order_flagged always says reason "dispute"; this is the same message
    # with another reason (to fold into it once it takes a reason argument).
    from shop import delivery
    from shop.orders import build_acp_order_event

    order_id = payload["order"]["id"]
    flagged = {
        **payload,
        "event": "order.flagged",
        "flag": {"reason": reason, "payment_reference": reference, **details},
    }
    delivery._add(session_id, order_id, delivery.MERCHANT, "order.flagged", flagged)
    if state.agent_sink is not None:
        delivery._add(
            session_id,
            order_id,
            delivery.AGENT,
            "order_update",
            build_acp_order_event("order_update", payload, "manual_review"),
        )
