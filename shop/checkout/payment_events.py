"""Provider webhook events applied to the checkout domain: record the event, then act once.

The event id is inserted first (unique per provider) and the checkout domain's change commits
in the same transaction, so an event is recorded exactly when it was applied; a duplicate
delivery fails the insert and does nothing. A failure that arrives while the session's charge
is in flight is deferred (not recorded; the provider delivers it again). The domain
(shop.checkout) owns every state move; this module picks the move, and says loudly what
matches no session of this store.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from shop import checkout, clock, metrics
from shop.checkout import Settlement, Status, refunds, session_rows, tally
from shop.payments import EventKind, PaymentEvent
from shop.state import ShopState
from shop.storage import rows_of, transaction
from shop.storage.models import CheckoutSession, ProviderEvent

log = logging.getLogger("shop.payment_events")


class DeferredEventError(Exception):
    """The event cannot be applied yet (a charge is in flight): nothing was recorded, and the
    provider's redelivery applies it."""


def apply_event(state: ShopState, event: PaymentEvent) -> str:
    """Apply one verified provider event; return what happened (for the log and the response)."""
    try:
        transaction.write(
            insert(ProviderEvent).values(
                id=f"{state.provider.name}:{event.id}",
                type=event.type,
                session_id=event.session_id,
                received_at=clock.epoch(),
            )
        )
    except IntegrityError:  # recorded before (or by a concurrent delivery of the same event)
        transaction.rollback()
        outcome = "duplicate"
    else:
        try:
            outcome = _apply(state, event)
        except DeferredEventError:
            transaction.rollback()  # the event id too: a redelivery must not be a "duplicate"
            raise
        transaction.commit()  # the domain has committed already when it changed anything
    metrics.inc("shop_webhook_events_total", outcome=outcome.split(":")[0])
    log.info(
        "provider event %s (%s) session=%s: %s", event.id, event.type, event.session_id, outcome
    )
    return outcome


def _apply(state: ShopState, event: PaymentEvent) -> str:
    if event.kind == EventKind.IGNORED:
        return "ignored"
    row = _session_for(event)
    if row is None:
        return _no_session(state, event)
    if event.kind == EventKind.PAID:
        if _paid_by_another(row, event):
            return checkout.refund_duplicate(state, row.id, event.reference, row.payment_reference)
        settled = checkout.settle_payment(
            state, row.id, event.reference, event.amount, event.currency
        )
        if settled != Settlement.ALREADY_COMPLETED:
            metrics.inc("shop_checkouts_completed_total", via="webhook")
        return str(settled)
    if event.kind == EventKind.FAILED:
        return _failed(state, row.id, event)
    if event.kind == EventKind.REFUNDED and _paid_by_another(row, event):
        return "ignored_refund_of_another_payment"  # e.g. our refund of a duplicate payment
    if event.kind == EventKind.REFUNDED:  # a full refund cancels the order (shop/refunds.py)
        return refunds.cancel_refunded_order(state, row.id, event.reference, event.amount or 0)
    return _disputed(state, row, event)


def _paid_by_another(row: Any, event: PaymentEvent) -> bool:
    """True when a completed session was paid by a payment other than the event's."""
    return bool(
        row.status == Status.COMPLETED
        and row.payment_reference
        and event.reference
        and row.payment_reference != event.reference
    )


def _session_for(event: PaymentEvent) -> Any:
    """Find the event's session by its checkout_session_id, else by the payment it names."""
    if event.session_id is not None:
        return session_rows.load(event.session_id)
    if not event.reference:
        return None
    # Stripe disputes name only the PaymentIntent; complete stored it as payment_reference.
    return transaction.execute(
        rows_of(CheckoutSession)
        .where(CheckoutSession.payment_reference == event.reference)
        .order_by(CheckoutSession.created_at)
        .limit(1)
    ).first()


def _no_session(state: ShopState, event: PaymentEvent) -> str:
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


def _failed(state: ShopState, session_id: str, event: PaymentEvent) -> str:
    # Read only to choose the answer: fail_payment's UPDATE is conditional on its own.
    status, current = transaction.execute(
        select(CheckoutSession.status, CheckoutSession.payment_reference).where(
            CheckoutSession.id == session_id
        )
    ).one()
    if status == Status.IN_PROGRESS and current is None:
        raise DeferredEventError(
            f"session {session_id} is charging a payment right now, so the failure of payment "
            f"{event.reference} cannot be matched to it yet"
        )
    if checkout.fail_payment(state, session_id, event.reference, event.message):
        metrics.inc("shop_payment_declines_total", via="webhook")
        metrics.PAYMENT_FAILURES.labels(provider=state.provider.name, reason="webhook_failed").inc()
        tally.add("payment_failed.webhook_failed")  # committed by record()
        metrics.event(
            "payment_failed",
            session_id=session_id,
            provider=state.provider.name,
            reason="webhook_failed",
        )
        return "payment_failed"
    if status != Status.IN_PROGRESS:
        return f"ignored_in_status:{status}"  # a late failure never un-pays a session
    # The session is paying with another attempt (or one still in flight): this failure is
    # an earlier attempt's, and reopening the session would let the buyer pay twice.
    log.warning(
        "payment %s failed, but session %s is paying with another attempt; ignored",
        event.reference,
        session_id,
    )
    return "ignored_other_attempt"


def _disputed(state: ShopState, row: CheckoutSession, event: PaymentEvent) -> str:
    session_id, order_id = row.id, row.order_id
    flagged = checkout.flag_for_review(state, session_id, "dispute", event.reference)
    log.error(
        "DISPUTE on order %s (session %s, payment %s)%s",
        order_id,
        session_id,
        event.reference,
        ": review it before shipping" if flagged else ", which was already flagged for review",
    )
    return "flagged" if flagged else "already_flagged"
