"""Order hand-off: every message about an order reaches its destination exactly once.

Messages are rows in `order_deliveries`, inserted in the same transaction that marks the
session paid (or flagged), unique per (session, destination, event). Sending happens after
the commit on a background thread, so the agent's /complete answer never waits for the
merchant's endpoint. A worker takes a row with one conditional UPDATE (a lease); a worker that
dies mid-send lets the lease run out, and the per-worker sweeper (or any later request's
sweep) picks the row up again. Failures are retried with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shop import clock, metrics
from shop.db import OrderDelivery, db
from shop.state import ShopState

log = logging.getLogger("shop.delivery")

LEASE_SECONDS = 60
SWEEP_SECONDS = 15
MAX_ATTEMPTS = 12  # about 24 h of backoff
BACKOFF_BASE = 30  # 30 s, 60 s, 2 min … capped at 4 h
OPEN_STATES = ("pending", "failed", "delivering")

MERCHANT = "merchant"
AGENT = "agent"


def backoff(attempts: int) -> int:
    """Return seconds to wait before the next try after `attempts` failures."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), 4 * 3600)


def _add(session_id: str, order_id: str, destination: str, event: str,
         payload: Mapping[str, Any]) -> None:
    """Insert one message row in the caller's transaction (a duplicate is silently skipped)."""
    now = clock.epoch()
    try:
        with db.session.begin_nested():
            db.session.add(OrderDelivery(
                session_id=session_id, order_id=order_id, destination=destination, event=event,
                payload=json.dumps(payload), state="pending", attempts=0, next_at=now,
                created_at=now))
    except IntegrityError:
        pass  # already queued by another path: exactly once


def enqueue_order_created(state: ShopState, session_id: str, payload: Mapping[str, Any]) -> None:
    """Queue the merchant's order (and the agent platform's order_create) for a paid session."""
    order_id = payload["order"]["id"]
    _add(session_id, order_id, MERCHANT, "order.created", payload)
    if state.agent_sink is not None:
        from shop.orders import build_acp_order_event

        _add(session_id, order_id, AGENT, "order_create",
             build_acp_order_event("order_create", payload, "confirmed"))


def enqueue_order_flagged(state: ShopState, session_id: str, payload: Mapping[str, Any],
                          reference: str | None) -> None:
    """Queue `order.flagged` for the merchant (and order_update for the agent platform)."""
    order_id = payload["order"]["id"]
    flagged = {**payload, "event": "order.flagged",
               "flag": {"reason": "dispute", "payment_reference": reference}}
    _add(session_id, order_id, MERCHANT, "order.flagged", flagged)
    if state.agent_sink is not None:
        from shop.orders import build_acp_order_event

        _add(session_id, order_id, AGENT, "order_update",
             build_acp_order_event("order_update", payload, "manual_review"))


def _sink(state: ShopState, destination: str) -> Any:
    return state.sink if destination == MERCHANT else state.agent_sink


def claim(delivery_id: int) -> bool:
    """Take the lease on one message; False when another worker has it or it is done."""
    now = clock.epoch()
    taken = db.session.execute(
        update(OrderDelivery)
        .where(OrderDelivery.id == delivery_id, OrderDelivery.state.in_(OPEN_STATES),
               OrderDelivery.next_at <= now)
        .values(state="delivering", next_at=now + LEASE_SECONDS,
                attempts=OrderDelivery.attempts + 1)
    ).rowcount == 1
    db.session.commit()
    return taken


def send_claimed(state: ShopState, delivery_id: int) -> bool:
    """Send a claimed message and record the outcome; True when it was delivered."""
    row = db.session.get(OrderDelivery, delivery_id)
    if row is None:
        db.session.rollback()
        return False
    db.session.refresh(row)
    order_id, session_id, destination, event, attempts, payload = (
        row.order_id, row.session_id, row.destination, row.event, row.attempts, row.payload)
    # End the read before the network call: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), and a slow receiver must not stall every checkout while it answers.
    db.session.rollback()
    try:
        sink = _sink(state, destination)
        if sink is None:
            raise RuntimeError(f"no {destination} destination is configured any more")
        sink.deliver(json.loads(payload))
    except Exception as exc:  # a sink must never break the checkout: record and retry
        gave_up = attempts >= MAX_ATTEMPTS
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.error("ORDER DELIVERY FAILED order=%s session=%s to=%s event=%s attempt=%d "
                  "reason=%s — %s", order_id, session_id, destination, event, attempts, reason,
                  f"giving up; replay with `flask --app app orders replay {session_id}`"
                  if gave_up else f"retrying in {backoff(attempts)}s")
        metrics.inc("shop_order_deliveries_total", destination=destination,
                    outcome="gave_up" if gave_up else "failed")
        db.session.rollback()
        db.session.execute(update(OrderDelivery).where(OrderDelivery.id == delivery_id).values(
            state="gave_up" if gave_up else "failed", last_error=reason,
            next_at=clock.epoch() + backoff(attempts)))
        db.session.commit()
        return False
    db.session.execute(update(OrderDelivery).where(OrderDelivery.id == delivery_id)
                       .values(state="delivered", last_error=None))
    db.session.commit()
    metrics.inc("shop_order_deliveries_total", destination=destination, outcome="delivered")
    log.info("%s %s for session %s delivered to the %s", event, order_id, session_id,
             destination)
    return True


def deliver_session(state: ShopState, session_id: str) -> int:
    """Claim and send every due message of one session in this thread; return how many went."""
    ids = db.session.execute(
        select(OrderDelivery.id).where(OrderDelivery.session_id == session_id,
                                       OrderDelivery.state.in_(OPEN_STATES))
        .order_by(OrderDelivery.id)
    ).scalars().all()
    db.session.commit()
    return sum(claim(i) and send_claimed(state, i) for i in ids)


def schedule(state: ShopState, session_id: str) -> None:
    """Send a session's queued messages on a background thread (the caller does not wait)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                deliver_session(state, session_id)
            except Exception:
                log.exception("order hand-off for %s failed; the sweeper will retry", session_id)
            finally:
                db.session.remove()

    threading.Thread(target=run, name=f"deliver-{session_id}", daemon=True).start()


def sweep(state: ShopState, limit: int = 50) -> int:
    """Retry every due message once (failed, pending, or leased by a dead worker)."""
    ids = db.session.execute(
        select(OrderDelivery.id).where(OrderDelivery.state.in_(OPEN_STATES),
                                       OrderDelivery.next_at <= clock.epoch())
        .order_by(OrderDelivery.next_at).limit(limit)
    ).scalars().all()
    db.session.commit()
    return sum(claim(i) and send_claimed(state, i) for i in ids)


def undelivered() -> list[OrderDelivery]:
    """Return every message that has not reached its destination."""
    return list(db.session.execute(
        select(OrderDelivery).where(OrderDelivery.state != "delivered")
        .order_by(OrderDelivery.created_at)
    ).scalars())


def replay(state: ShopState, session_id: str) -> list[OrderDelivery]:
    """Send a session's merchant order (and agent events) again now; same order id."""
    db.session.execute(update(OrderDelivery).where(OrderDelivery.session_id == session_id)
                       .values(state="pending", next_at=0))
    db.session.commit()
    deliver_session(state, session_id)
    return list(db.session.execute(
        select(OrderDelivery).where(OrderDelivery.session_id == session_id)
        .order_by(OrderDelivery.id)).scalars())


def _sweeper(app: Flask) -> None:
    stop: threading.Event = app.extensions["shop.sweeper_stop"]
    while not stop.wait(SWEEP_SECONDS):
        with app.app_context():
            try:
                sweep(app.extensions["shop"])
            except Exception:
                log.exception("delivery sweep failed; will try again")
            finally:
                db.session.remove()


def init_app(app: Flask) -> None:
    """Start one sweeper thread per worker process, lazily (after gunicorn has forked)."""
    app.extensions["shop.sweeper_stop"] = threading.Event()
    lock = threading.Lock()

    @app.before_request
    def _start_sweeper() -> None:
        if app.extensions.get("shop.sweeper") or app.config.get("TESTING_NO_SWEEPER"):
            return
        with lock:
            if not app.extensions.get("shop.sweeper"):
                thread = threading.Thread(target=_sweeper, args=(app,), name="order-sweeper",
                                          daemon=True)
                app.extensions["shop.sweeper"] = thread
                thread.start()
