"""Retention: forget expired sessions (and their PII) and old idempotency records."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from shop import clock
from shop.db import CheckoutSession, OrderDelivery, db
from shop.delivery import OPEN_STATES
from shop.idempotency import purge_idempotency_records

log = logging.getLogger("shop.retention")

PURGE_EVERY_SECONDS = 300
# Expired sessions stay readable this long (agents get `expired`, not 404), then go with their PII.
GRACE_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class PurgeResult:
    sessions: int
    idempotency_records: int
    kept_undelivered: int


def _undelivered():  # type: ignore[no-untyped-def]
    # A session with a message still being retried stays; one whose last retry failed
    # (gave_up) may go, after it was logged.
    return CheckoutSession.id.in_(
        select(OrderDelivery.session_id).where(OrderDelivery.state.in_(OPEN_STATES)))


def purge() -> PurgeResult:
    """Delete sessions an hour past their TTL and records past 24 h; keep undelivered orders."""
    now = clock.epoch()
    expired = CheckoutSession.expires_at <= now - GRACE_SECONDS
    kept = db.session.execute(
        select(func.count()).select_from(CheckoutSession).where(expired, _undelivered())
    ).scalar_one()
    if kept:
        log.warning("purge kept %d expired session(s) whose order is still being delivered; "
                    "see `flask --app app orders failed`", kept)
    doomed = select(CheckoutSession.id).where(expired, ~_undelivered())
    for delivery_row in db.session.execute(
        select(OrderDelivery).where(OrderDelivery.state == "gave_up",
                                    OrderDelivery.session_id.in_(doomed))
    ).scalars():
        log.error("purging session %s whose %s %s never reached the %s (all retries failed)",
                  delivery_row.session_id, delivery_row.event, delivery_row.order_id,
                  delivery_row.destination)
    ids = list(db.session.execute(doomed).scalars())
    if ids:
        db.session.execute(delete(OrderDelivery).where(OrderDelivery.session_id.in_(ids)))
        db.session.execute(delete(CheckoutSession).where(CheckoutSession.id.in_(ids)))
    db.session.commit()
    return PurgeResult(len(ids), purge_idempotency_records(), kept)
