"""Order hand-off: every message about an order reaches its destination exactly once.

Messages are rows in `order_deliveries`, inserted in the same transaction that marks the
session paid (or flagged, or canceled), unique per (session, destination, event). Sending
happens after the commit on a background thread, so the agent's /complete answer never waits
for the merchant's endpoint. A worker takes a row with one conditional UPDATE (a lease); a
worker that dies mid-send lets the lease run out, and the per-worker sweeper picks the row up
again.

Failures are retried on the schedule stated in shop.retry_schedule (about a day); after the
last try the row is `gave_up`: logged once with its whole payload, listed by `orders failed`,
and kept for `orders replay` (shop.retention decides how long). A row whose sink drops orders
(LogSink: no orderWebhookUrl) is `dropped`, never retried by itself, and waits for
`orders replay` once a URL is set.

States: pending -> delivering (leased) -> delivered | failed (retried) | gave_up | dropped.
For gave_up and dropped rows `next_at` holds when they got there (no try is due any more).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, not_, select, update
from sqlalchemy.exc import IntegrityError

from shop import clock, metrics
from shop.db import OrderDelivery, db, read
from shop.order_payload import build_acp_order_event
from shop.retry_schedule import LEASE_SECONDS, MAX_ATTEMPTS, backoff, sweep_seconds
from shop.state import ShopState

log = logging.getLogger("shop.delivery")

OPEN_STATES = ("pending", "failed", "delivering")  # a try is still coming
STRANDED_STATES = ("gave_up", "dropped")  # paid, not delivered, waiting for `orders replay`

MERCHANT = "merchant"
AGENT = "agent"


def agent_event_key(event: Mapping[str, Any]) -> str:
    """Return the outbox key of an ACP event: order_create once, order_update once per status."""
    if event["type"] == "order_update":
        return f"order_update:{event['data']['status']}"
    return str(event["type"])


def _add(
    session_id: str, order_id: str, destination: str, event: str, payload: Mapping[str, Any]
) -> bool:
    """Insert one message row in the caller's transaction; False when it was already queued."""
    if destination == AGENT:
        event = agent_event_key(payload)  # a later status is a new message, not a repeat
    now = clock.epoch()
    try:
        with db.session.begin_nested():
            db.session.add(
                OrderDelivery(
                    session_id=session_id,
                    order_id=order_id,
                    destination=destination,
                    event=event,
                    payload=json.dumps(payload),
                    state="pending",
                    attempts=0,
                    next_at=now,
                    created_at=now,
                )
            )
    except IntegrityError:
        return False  # already queued by another path: exactly once
    return True


def enqueue_order_created(state: ShopState, session_id: str, payload: Mapping[str, Any]) -> None:
    """Queue the merchant's order (and the agent platform's order_create) for a paid session."""
    order_id = payload["order"]["id"]
    _add(session_id, order_id, MERCHANT, "order.created", payload)
    if state.agent_sink is not None:
        _add(
            session_id,
            order_id,
            AGENT,
            "order_create",
            build_acp_order_event("order_create", payload, "confirmed"),
        )


def enqueue_order_flagged(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    reference: str | None,
    flag: Mapping[str, Any] | None = None,
) -> None:
    """Queue `order.flagged` for the merchant (and order_update for the agent platform).

    `flag` adds to (or overrides) the flag object, e.g. {"reason": "amount_mismatch", …}.
    """
    order_id = payload["order"]["id"]
    flagged = {
        **payload,
        "event": "order.flagged",
        "flag": {"reason": "dispute", "payment_reference": reference, **(flag or {})},
    }
    _add(session_id, order_id, MERCHANT, "order.flagged", flagged)
    if state.agent_sink is not None:
        _add(
            session_id,
            order_id,
            AGENT,
            "order_update",
            build_acp_order_event("order_update", payload, "manual_review"),
        )


def enqueue_order_canceled(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    reason: str,
    reference: str | None,
    amount_refunded: int,
) -> bool:
    """Queue `order.canceled` (and order_update `canceled`); False when already queued.

    The unique (session, destination, event) row is the claim: a second refund event, or two
    workers applying the same one, insert nothing.
    """
    order_id = payload["order"]["id"]
    canceled = {
        **payload,
        "event": "order.canceled",
        "cancel": {
            "reason": reason,
            "payment_reference": reference,
            "amount_refunded": amount_refunded,
        },
    }
    if not _add(session_id, order_id, MERCHANT, "order.canceled", canceled):
        return False
    if state.agent_sink is not None:
        refund = {
            "id": f"adj_refund_{order_id}",
            "amount": amount_refunded,
            "occurred_at": clock.iso(clock.epoch()),
            "reason": reason,
        }
        _add(
            session_id,
            order_id,
            AGENT,
            "order_update",
            build_acp_order_event("order_update", payload, "canceled", refund=refund),
        )
    return True


def _sink(state: ShopState, destination: str) -> Any:
    return state.sink if destination == MERCHANT else state.agent_sink


def claim(delivery_id: int) -> bool:
    """Take the lease on one message; False when another worker has it or it is done."""
    now = clock.epoch()
    taken = (
        db.session.execute(
            update(OrderDelivery)
            .where(
                OrderDelivery.id == delivery_id,
                OrderDelivery.state.in_(OPEN_STATES),
                OrderDelivery.next_at <= now,
            )
            .values(
                state="delivering", next_at=now + LEASE_SECONDS, attempts=OrderDelivery.attempts + 1
            )
        ).rowcount
        == 1
    )
    db.session.commit()
    return taken


def _record(delivery_id: int, **values: Any) -> None:
    db.session.execute(
        update(OrderDelivery).where(OrderDelivery.id == delivery_id).values(**values)
    )
    db.session.commit()


def send_claimed(state: ShopState, delivery_id: int) -> bool:
    """Send a claimed message and record the outcome; True when it was delivered."""
    # Read outside any transaction (shop.db.read): on SQLite a transaction holds the write
    # lock, and a slow receiver must not stall every checkout while it answers.
    rows = read(
        select(
            OrderDelivery.order_id,
            OrderDelivery.session_id,
            OrderDelivery.destination,
            OrderDelivery.event,
            OrderDelivery.attempts,
            OrderDelivery.payload,
        ).where(OrderDelivery.id == delivery_id)
    )
    if not rows:
        return False
    order_id, session_id, destination, event, attempts, payload = rows[0]
    sink = _sink(state, destination)
    try:
        if sink is None:
            raise RuntimeError(f"no {destination} destination is configured any more")
        sink.deliver(json.loads(payload))
    except Exception as exc:  # a sink must never break the checkout: record and retry
        _failed(delivery_id, order_id, session_id, destination, event, attempts, payload, exc)
        return False
    if getattr(sink, "drops_orders", False):  # LogSink logged it; nobody received it
        metrics.inc("shop_order_deliveries_total", destination=destination, outcome="dropped")
        _record(
            delivery_id,
            state="dropped",
            next_at=clock.epoch(),
            last_error="dropped: no orderWebhookUrl was set; set it, restart, and run "
            f"`flask --app app orders replay {session_id}`",
        )
        return False
    _record(delivery_id, state="delivered", last_error=None)
    metrics.inc("shop_order_deliveries_total", destination=destination, outcome="delivered")
    log.info("%s %s for session %s delivered to the %s", event, order_id, session_id, destination)
    return True


def _failed(
    delivery_id: int,
    order_id: str,
    session_id: str,
    destination: str,
    event: str,
    attempts: int,
    payload: str,
    exc: Exception,
) -> None:
    """Log one prominent line and schedule the next try, or give up after the last."""
    gave_up = attempts >= MAX_ATTEMPTS
    reason = f"{type(exc).__name__}: {exc}"[:500]
    if gave_up:
        # The whole payload goes in the line: the log keeps the order even after purge.
        compact = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)
        log.error(
            "ORDER DELIVERY FAILED order=%s session=%s to=%s event=%s attempt=%d "
            "reason=%s — GIVING UP after %d tries; replay with `flask --app app orders "
            "replay %s`; payload=%s",
            order_id,
            session_id,
            destination,
            event,
            attempts,
            reason,
            attempts,
            session_id,
            compact,
        )
    else:
        log.error(
            "ORDER DELIVERY FAILED order=%s session=%s to=%s event=%s attempt=%d "
            "reason=%s — retrying in %ds",
            order_id,
            session_id,
            destination,
            event,
            attempts,
            reason,
            backoff(attempts),
        )
    metrics.inc(
        "shop_order_deliveries_total",
        destination=destination,
        outcome="gave_up" if gave_up else "failed",
    )
    db.session.rollback()
    now = clock.epoch()
    _record(
        delivery_id,
        state="gave_up" if gave_up else "failed",
        last_error=reason,
        next_at=now if gave_up else now + backoff(attempts),
    )


def deliver_session(state: ShopState, session_id: str) -> int:
    """Claim and send every due message of one session in this thread; return how many went."""
    ids = [
        row.id
        for row in read(
            select(OrderDelivery.id)
            .where(OrderDelivery.session_id == session_id, OrderDelivery.state.in_(OPEN_STATES))
            .order_by(OrderDelivery.id)
        )
    ]
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
    ids = (
        db.session.execute(
            select(OrderDelivery.id)
            .where(OrderDelivery.state.in_(OPEN_STATES), OrderDelivery.next_at <= clock.epoch())
            .order_by(OrderDelivery.next_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    db.session.commit()
    return sum(claim(i) and send_claimed(state, i) for i in ids)


def undelivered() -> list[OrderDelivery]:
    """Return every message that has not reached its destination."""
    return list(
        db.session.execute(
            select(OrderDelivery)
            .where(OrderDelivery.state != "delivered")
            .order_by(OrderDelivery.created_at, OrderDelivery.id)
        ).scalars()
    )


def replay(state: ShopState, session_id: str) -> list[OrderDelivery]:
    """Send a session's merchant order (and agent events) again now; same order id."""
    now = clock.epoch()
    # One conditional statement: a message another worker is sending right now (an unexpired
    # lease) is left to it, so a replay never races a send into a second delivery.
    db.session.execute(
        update(OrderDelivery)
        .where(
            OrderDelivery.session_id == session_id,
            not_(and_(OrderDelivery.state == "delivering", OrderDelivery.next_at > now)),
        )
        .values(state="pending", next_at=0)
    )
    db.session.commit()
    deliver_session(state, session_id)
    return list(
        db.session.execute(
            select(OrderDelivery)
            .where(OrderDelivery.session_id == session_id)
            .order_by(OrderDelivery.id)
        ).scalars()
    )


def dropped_sessions() -> list[str]:
    """Return the sessions with a message dropped for want of a destination, oldest first."""
    rows = db.session.execute(
        select(OrderDelivery.session_id, OrderDelivery.created_at)
        .where(OrderDelivery.state == "dropped")
        .order_by(OrderDelivery.created_at)
    ).all()
    db.session.commit()
    return list(dict.fromkeys(session_id for session_id, _ in rows))


def _sweeper(app: Flask, interval: float) -> None:
    stop: threading.Event = app.extensions["shop.sweeper_stop"]
    while not stop.wait(interval):
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
    interval = sweep_seconds(app.extensions["shop"].settings.env)
    lock = threading.Lock()

    @app.before_request
    def _start_sweeper() -> None:
        if app.extensions.get("shop.sweeper") or app.config.get("TESTING_NO_SWEEPER"):
            return
        with lock:
            if not app.extensions.get("shop.sweeper"):
                thread = threading.Thread(
                    target=_sweeper, args=(app, interval), name="order-sweeper", daemon=True
                )
                app.extensions["shop.sweeper"] = thread
                thread.start()
