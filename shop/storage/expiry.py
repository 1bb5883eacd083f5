"""Rows that expire by age alone: idempotency records and provider webhook event ids.

Sessions and their orders expire by domain rules (shop.checkout.retention); these two tables
only by time, so their purge lives with the tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from shop import clock
from shop.storage import transaction
from shop.storage.models import IdempotencyRecord, ProviderEvent

# Idempotency-Key records are kept at least 24 h (ACP section 6), then purged.
IDEMPOTENCY_RETENTION_SECONDS = 24 * 3600
# Provider webhook event ids are remembered (to drop redeliveries) for 7 days: Stripe retries a
# failed delivery for up to 3 days, Razorpay for 24 h. An event redelivered later is still
# harmless: every state move is conditional and only goes forward.
PROVIDER_EVENT_RETENTION_SECONDS = 7 * 86400


BATCH = 1000  # rows deleted per transaction: a backlog never holds the write lock for long


def purge_idempotency_records() -> int:
    """Delete idempotency records older than the retention window; return how many.

    created_at has no index (one page fewer written by every request): records are inserted
    in id order, one transaction at a time, so the oldest have the lowest ids. Each batch
    looks at the BATCH lowest ids only and deletes those past the window; it stops at a batch
    with none, so the records inside the window are never scanned. A record stamped in the
    future by a clock stepped back only holds its batch's place until it ages too.
    """
    cutoff = clock.epoch() - IDEMPOTENCY_RETENTION_SECONDS
    table = IdempotencyRecord.__table__
    lowest = select(table.c.id, table.c.created_at).order_by(table.c.id).limit(BATCH).subquery()
    old = select(lowest.c.id).where(lowest.c.created_at < cutoff).scalar_subquery()
    deleted = 0
    while True:
        count = transaction.execute(delete(table).where(table.c.id.in_(old))).rowcount or 0
        transaction.commit()
        deleted += count
        if count == 0:
            return deleted


def purge_provider_events(now: int) -> int:
    """Delete provider event ids past their retention; return how many."""
    cutoff = now - PROVIDER_EVENT_RETENTION_SECONDS
    return _in_batches(ProviderEvent.id, ProviderEvent.received_at < cutoff)


def _in_batches(key: Any, condition: Any) -> int:
    table = key.table
    deleted = 0
    while True:
        batch = select(key).where(condition).limit(BATCH).scalar_subquery()
        count = transaction.execute(delete(table).where(key.in_(batch))).rowcount or 0
        transaction.commit()
        deleted += count
        if count < BATCH:
            return deleted
