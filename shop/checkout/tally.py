"""Business counts per UTC hour, kept in the database (table hourly_counts).

Prometheus counters start again at every restart and live per scrape; the merchant's /status
page needs "today" and "per hour" that survive restarts, so each business event also adds
one to its hour's row, in the transaction that records the event (an event rolled back is
not counted). Names: sessions_created, completed, canceled, expired, out_of_stock,
payment_failed.<reason>. Rows older than KEEP_DAYS are purged (shop.checkout.retention).
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select, text

from shop import clock
from shop.storage import read, transaction
from shop.storage.models import HourlyCount
from shop.storage.transaction import write

KEEP_DAYS = 35
# Portable: SQLite >= 3.24 and PostgreSQL both take ON CONFLICT … DO UPDATE.
_ADD = text(
    "INSERT INTO hourly_counts (hour, name, n) VALUES (:hour, :name, 1) "
    "ON CONFLICT (hour, name) DO UPDATE SET n = hourly_counts.n + 1"
)
_UNSAFE = re.compile(r"[^a-z0-9_]+")


def reason_name(reason: str | None) -> str:
    """A decline code or reason as a short, bounded name (also a metric label value)."""
    return _UNSAFE.sub("_", (reason or "unknown").lower()).strip("_")[:40] or "unknown"


def add(name: str) -> None:
    """Count one `name` in this hour, in the current transaction (the caller commits)."""
    now = clock.epoch()
    write(_ADD, {"hour": now - now % 3600, "name": name})


def since(start: int) -> list[tuple[int, str, int]]:
    """Every (hour, name, n) from the hour holding `start` on, oldest first."""
    return [
        (hour, name, n)
        for hour, name, n in read(
            select(HourlyCount.hour, HourlyCount.name, HourlyCount.n)
            .where(HourlyCount.hour >= start - start % 3600)
            .order_by(HourlyCount.hour)
        )
    ]


def purge(now: int) -> None:
    """Forget hours older than KEEP_DAYS (in the current transaction).

    Hour 0 is kept: /healthz's write probe (shop.api.ops) counts there, and a purge that
    always has a row to delete would write even when nothing else is old.
    """
    transaction.execute(
        delete(HourlyCount).where(HourlyCount.hour > 0, HourlyCount.hour < now - KEEP_DAYS * 86400)
    )
