"""Retention: forget expired sessions (and their PII), old idempotency records and old
provider webhook event ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select

from shop import checkout, clock
from shop.checkout import Status, tally
from shop.orders import OPEN_STATES, STRANDED_STATES
from shop.state import ShopState
from shop.storage import rows_of, transaction
from shop.storage.expiry import (
    purge_idempotency_records,
    purge_provider_events,
)
from shop.storage.models import CheckoutSession, OrderDelivery

log = logging.getLogger("shop.retention")

PURGE_EVERY_SECONDS = 300
# Expired sessions stay readable this long (agents get `expired`, not 404), then go with their PII.
GRACE_SECONDS = 3600
# A paid order that never reached its destination (every retry failed, or dropped for want of
# orderWebhookUrl) keeps its session this long after that, for `orders failed` / `orders replay`.
UNDELIVERED_KEEP_DAYS = 30
UNDELIVERED_KEEP_SECONDS = UNDELIVERED_KEEP_DAYS * 86400


@dataclass(frozen=True, slots=True)
class PurgeResult:
    sessions: int
    idempotency_records: int
    kept_undelivered: int
    provider_events: int = 0


def _undelivered(now: int):  # type: ignore[no-untyped-def]
    # Kept: a message still being retried, or one stranded (gave_up / dropped; next_at is when
    # it got there) less than UNDELIVERED_KEEP_SECONDS ago.
    return CheckoutSession.id.in_(
        select(OrderDelivery.session_id).where(
            or_(
                OrderDelivery.state.in_(OPEN_STATES),
                and_(
                    OrderDelivery.state.in_(STRANDED_STATES),
                    OrderDelivery.next_at > now - UNDELIVERED_KEEP_SECONDS,
                ),
            )
        )
    )


def purge(state: ShopState) -> PurgeResult:
    """Delete sessions an hour past their TTL and records past 24 h; keep undelivered orders.

    Paying sessions are never deleted: those that will not hear from their provider are
    reopened first (checkout.release_stuck_payments), giving their stock back.
    """
    checkout.release_stuck_payments(state)
    now = clock.epoch()
    expired = and_(
        CheckoutSession.expires_at <= now - GRACE_SECONDS,
        CheckoutSession.status != Status.IN_PROGRESS,
    )
    kept = transaction.execute(
        select(func.count()).select_from(CheckoutSession).where(expired, _undelivered(now))
    ).scalar_one()
    if kept:
        log.warning(
            "purge kept %d expired session(s) whose order has not been delivered "
            "(still retrying, or given up or dropped less than %d days ago); see "
            "`flask --app app orders failed`",
            kept,
            UNDELIVERED_KEEP_DAYS,
        )
    doomed = select(CheckoutSession.id).where(expired, ~_undelivered(now))
    for delivery_row in transaction.execute(
        rows_of(OrderDelivery).where(
            OrderDelivery.state.in_(STRANDED_STATES), OrderDelivery.session_id.in_(doomed)
        )
    ):
        log.error(
            "PURGED UNDELIVERED ORDER: order %s of session %s (%s to the %s, %s since %s) "
            "never reached its destination and is now deleted after %d days; its "
            "payload is in the log line that gave up on it (or dropped it)",
            delivery_row.order_id,
            delivery_row.session_id,
            delivery_row.event,
            delivery_row.destination,
            delivery_row.state,
            clock.iso(delivery_row.next_at),
            UNDELIVERED_KEEP_DAYS,
        )
    tally.purge(now)
    ids = list(transaction.execute(doomed).scalars())
    if ids:
        transaction.execute(delete(OrderDelivery).where(OrderDelivery.session_id.in_(ids)))
        transaction.execute(delete(CheckoutSession).where(CheckoutSession.id.in_(ids)))
    transaction.commit()
    return PurgeResult(len(ids), purge_idempotency_records(), kept, purge_provider_events(now))
