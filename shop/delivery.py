"""Order hand-off: deliver each completed session's order to the OrderSink exactly once.

Delivery state lives on the session row and is claimed with one conditional UPDATE, so
/complete, a provider webhook, the per-worker sweeper and several gunicorn workers can all
try at once and the order still goes out once. A claim is a lease: a worker that dies
mid-delivery leaves the lease to run out and another worker picks the order up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app
from sqlalchemy import or_, update

from shop import clock
from shop.db import CheckoutSession, db
from shop.state import ShopState

log = logging.getLogger("shop.delivery")

LEASE_SECONDS = 60
SWEEP_SECONDS = 15
MAX_ATTEMPTS = 12
BACKOFF_BASE = 30  # 30 s, 60 s, 2 min … capped at 1 h


def backoff(attempts: int) -> int:
    """Return seconds to wait before the next try after `attempts` failures."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), 3600)


def claim(session_id: str) -> bool:
    """Take the delivery lease for one session; False when another worker has it or it's done."""
    now = clock.epoch()
    taken = db.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == session_id,
               CheckoutSession.delivery_state.in_(["pending", "failed", "delivering"]),
               CheckoutSession.delivery_next_at <= now)
        .values(delivery_state="delivering", delivery_next_at=now + LEASE_SECONDS,
                delivery_attempts=CheckoutSession.delivery_attempts + 1)
    ).rowcount == 1
    db.session.commit()
    return taken


def deliver_claimed(state: ShopState, session_id: str) -> bool:
    """Send the order of a claimed session and record the outcome; True when delivered."""
    from shop.order_payload import order_payload

    row = db.session.get(CheckoutSession, session_id)
    if row is None:
        return False
    try:
        payload = order_payload(state, row)
        state.sink.deliver(payload)
    except Exception as exc:  # a sink must never break the checkout: record and retry
        attempts = row.delivery_attempts
        gave_up = attempts >= MAX_ATTEMPTS
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.error("ORDER DELIVERY FAILED order=%s session=%s attempt=%d reason=%s%s",
                  row.order_id, session_id, attempts, reason,
                  " — giving up; replay with `flask --app app orders replay "
                  f"{session_id}`" if gave_up else f" — retrying in {backoff(attempts)}s")
        db.session.rollback()
        db.session.execute(
            update(CheckoutSession).where(CheckoutSession.id == session_id)
            .values(delivery_state="failed", delivery_error=reason,
                    delivery_next_at=None if gave_up else clock.epoch() + backoff(attempts))
        )
        db.session.commit()
        return False
    db.session.execute(
        update(CheckoutSession).where(CheckoutSession.id == session_id)
        .values(delivery_state="delivered", delivery_error=None, delivery_next_at=None)
    )
    db.session.commit()
    log.info("order %s for session %s delivered", row.order_id, session_id)
    return True


def deliver_now(state: ShopState, session_id: str) -> bool:
    """Claim and deliver one session's order in this thread."""
    return claim(session_id) and deliver_claimed(state, session_id)


def schedule(state: ShopState, session_id: str) -> None:
    """Deliver a just-paid order in the background so the agent's answer does not wait."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                deliver_now(state, session_id)
            finally:
                db.session.remove()

    threading.Thread(target=run, name=f"deliver-{session_id}", daemon=True).start()


def notify_flagged(state: ShopState, session_id: str, reference: str | None) -> None:
    """Tell the merchant (in the background) that a paid order is disputed: `order.flagged`."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    row = db.session.get(CheckoutSession, session_id)
    if row is None or not row.order_payload:
        return
    import json

    notice = {**json.loads(row.order_payload), "event": "order.flagged",
              "flag": {"reason": "dispute", "payment_reference": reference}}

    def run() -> None:
        with app.app_context():
            try:
                state.sink.deliver(notice)
            except Exception as exc:
                log.error("ORDER FLAG NOT DELIVERED order=%s session=%s reason=%s — check the "
                          "dispute in your provider's dashboard", row.order_id, session_id, exc)

    threading.Thread(target=run, name=f"flag-{session_id}", daemon=True).start()


def due_sessions(limit: int = 20) -> list[str]:
    """Return sessions whose delivery is pending, failed and due, or whose lease ran out."""
    now = clock.epoch()
    rows = db.session.execute(
        db.select(CheckoutSession.id)
        .where(CheckoutSession.delivery_state.in_(["pending", "failed", "delivering"]),
               CheckoutSession.delivery_next_at.is_not(None),
               CheckoutSession.delivery_next_at <= now)
        .limit(limit)
    ).scalars().all()
    db.session.commit()
    return list(rows)


def sweep(state: ShopState) -> int:
    """Retry every due delivery once; return how many were delivered."""
    return sum(deliver_now(state, session_id) for session_id in due_sessions())


def undelivered() -> list[CheckoutSession]:
    """Return completed sessions whose order has not reached the merchant."""
    return list(db.session.execute(
        db.select(CheckoutSession)
        .where(or_(CheckoutSession.delivery_state.in_(["pending", "failed", "delivering"])))
        .order_by(CheckoutSession.updated_at)
    ).scalars())


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
    """Start one sweeper thread per worker process, lazily (after gunicorn forks)."""
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


def stop_sweeper(app: Any) -> None:
    """Stop the sweeper thread (tests)."""
    app.extensions["shop.sweeper_stop"].set()
