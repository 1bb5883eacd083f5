"""Rows that expire by age alone: idempotency records and provider webhook event ids.

Sessions and their orders expire by domain rules (shop.checkout.retention); these two tables
only by time, so their purge lives with the tables.
"""

from __future__ import annotations

from sqlalchemy import delete

from shop import clock
from shop.storage import transaction
from shop.storage.models import IdempotencyRecord, ProviderEvent

# Idempotency-Key records are kept at least 24 h (ACP section 6), then purged.
IDEMPOTENCY_RETENTION_SECONDS = 24 * 3600
# Provider webhook event ids are remembered (to drop redeliveries) for 7 days: Stripe retries a
# failed delivery for up to 3 days, Razorpay for 24 h. An event redelivered later is still
# harmless: every state move is conditional and only goes forward.
PROVIDER_EVENT_RETENTION_SECONDS = 7 * 86400


def purge_idempotency_records() -> int:
    """Delete idempotency records older than the retention window; return how many."""
    cutoff = clock.epoch() - IDEMPOTENCY_RETENTION_SECONDS
    result = transaction.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
    )
    transaction.commit()
    return result.rowcount or 0


def purge_provider_events(now: int) -> int:
    """Delete provider event ids past their retention; return how many."""
    cutoff = now - PROVIDER_EVENT_RETENTION_SECONDS
    result = transaction.execute(delete(ProviderEvent).where(ProviderEvent.received_at < cutoff))
    transaction.commit()
    return result.rowcount or 0
