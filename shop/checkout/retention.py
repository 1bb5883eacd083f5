"""Retention: forget expired sessions (and their PII), old idempotency records and old
provider webhook event ids."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import and_, delete, func, or_, select

from shop import checkout, clock
from shop.checkout import Status, tally
from shop.config.fields import env_seconds
from shop.orders import OPEN_STATES, STRANDED_STATES
from shop.state import ShopState
from shop.storage import health, rows_of, transaction
from shop.storage.expiry import (
    purge_idempotency_records,
    purge_provider_events,
)
from shop.storage.models import CheckoutSession, OrderDelivery
from shop.storage.space import SpaceResult, give_back

log = logging.getLogger("shop.retention")

PURGE_EVERY_SECONDS = 300
FIRST_PURGE_SECONDS = 2.0  # after a worker's first request (jittered up to twice this)
PURGE_BATCH = 500  # sessions deleted per transaction
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
    tally.purge(now)
    transaction.commit()
    doomed = select(CheckoutSession.id).where(expired, ~_undelivered(now)).limit(PURGE_BATCH)
    purged = 0
    while True:  # in batches, each its own short transaction: checkouts wait for none long
        ids = list(transaction.execute(doomed).scalars())
        if not ids:
            break
        _log_stranded(ids)
        transaction.execute(delete(OrderDelivery).where(OrderDelivery.session_id.in_(ids)))
        transaction.execute(delete(CheckoutSession).where(CheckoutSession.id.in_(ids)))
        transaction.commit()
        purged += len(ids)
    transaction.commit()
    return PurgeResult(purged, purge_idempotency_records(), kept, purge_provider_events(now))


def _log_stranded(ids: list[str]) -> None:
    for delivery_row in transaction.execute(
        rows_of(OrderDelivery).where(
            OrderDelivery.state.in_(STRANDED_STATES), OrderDelivery.session_id.in_(ids)
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


# ------------------------------------------------------- housekeeping, off the request path


def purge_seconds(env: Mapping[str, str]) -> float:
    """How often each worker purges in the background (SHOP_PURGE_SECONDS, default 300)."""
    return env_seconds(
        env,
        "SHOP_PURGE_SECONDS",
        PURGE_EVERY_SECONDS,
        0.1,
        86400,
        "how often the store forgets expired sessions",
    )


def housekeep(state: ShopState) -> tuple[PurgeResult, SpaceResult]:
    """Purge, then give the space back to the disk; log what it did when it did anything."""
    result = purge(state)
    space = give_back()
    if result.sessions or result.idempotency_records or space.before - space.after > 2**20:
        log.info(
            "purged %d expired session(s), %d idempotency record(s); database %.1f -> %.1f MB",
            result.sessions,
            result.idempotency_records,
            space.before / 2**20,
            space.after / 2**20,
        )
    return result, space


class _Housekeeper:
    """One thread per worker process: purge soon after start, then every `interval` seconds."""

    def __init__(self, app: Flask, interval: float) -> None:
        self.app, self.interval, self.pid = app, interval, os.getpid()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)

    def _run(self) -> None:
        # Jittered, so the workers of one store do not all purge in the same second.
        delay = random.uniform(FIRST_PURGE_SECONDS, 2 * FIRST_PURGE_SECONDS)
        while not self.stop.wait(delay):
            with self.app.app_context():
                try:
                    housekeep(self.app.extensions["shop"])
                except Exception as exc:
                    if health.failure(exc) is None:  # a failing database: said once
                        log.exception("purging expired sessions failed; will try again")
                finally:
                    transaction.reset()
            delay = self.interval * random.uniform(0.9, 1.1)


def init_app(app: Flask) -> None:
    """Purge in the background, never inside a request: each worker starts its thread on its
    first request. Tests and commands that create apps of their own start none
    (`TESTING_NO_SWEEPER`: no background threads)."""
    interval = purge_seconds(app.extensions["shop"].settings.env)
    lock = threading.Lock()

    @app.before_request
    def _start_housekeeping() -> None:
        current = app.extensions.get(_HOUSEKEEPER)
        if current is not None and current.pid == os.getpid():
            return
        if app.config.get("TESTING_NO_SWEEPER"):
            return
        with lock:
            current = app.extensions.get(_HOUSEKEEPER)
            if current is None or current.pid != os.getpid():
                keeper = app.extensions[_HOUSEKEEPER] = _Housekeeper(app, interval)
                keeper.thread.start()


_HOUSEKEEPER = "shop.housekeeper"  # app.extensions key
