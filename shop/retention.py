"""Retention: forget expired sessions (and their PII) and old idempotency records."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select

from shop import clock
from shop.db import CheckoutSession, db
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
    # An order still being retried keeps its session; one whose last retry failed
    # (delivery_next_at cleared) may go, after it was logged.
    return and_(CheckoutSession.delivery_state.in_(["pending", "failed", "delivering"]),
                CheckoutSession.delivery_next_at.is_not(None))


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
    given_up = db.session.execute(
        select(CheckoutSession.id, CheckoutSession.order_id)
        .where(expired, CheckoutSession.delivery_state == "failed",
               CheckoutSession.delivery_next_at.is_(None))
    ).all()
    for session_id, order_id in given_up:
        log.error("purging session %s whose order %s was never delivered (all retries failed)",
                  session_id, order_id)
    result = db.session.execute(
        delete(CheckoutSession).where(expired, or_(CheckoutSession.delivery_state.is_(None),
                                                   ~_undelivered()))
    )
    db.session.commit()
    return PurgeResult(result.rowcount or 0, purge_idempotency_records(), kept)
