"""Order hand-off: every message about an order reaches its destination exactly once.

Messages are rows in `order_deliveries`, inserted in the same transaction that marks the
session paid (or flagged, or canceled), unique per (session, destination, event). Sending
happens after the commit on the process's one hand-off thread (a bounded queue), so the
agent's /complete answer never waits for the merchant's endpoint. A worker takes a row with
one conditional UPDATE (a lease); a worker that dies mid-send lets the lease run out, and the
per-worker sweeper picks the row up again.

Failures are retried on the schedule stated in shop.retry_schedule (about a day); after the
last try the row is `gave_up`: logged once with its whole payload, listed by `orders failed`,
and kept for `orders replay` (shop.retention decides how long). A row whose sink drops orders
(LogSink: no orderWebhookUrl) is inserted `dropped` and logged when its transaction commits,
never retried by itself, and waits for `orders replay` once a URL is set.

States: pending -> delivering (leased) -> delivered | failed (retried) | gave_up | dropped.
For gave_up and dropped rows `next_at` holds when they got there (no try is due any more).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, bindparam, not_, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from shop import clock, metrics
from shop.db import OrderDelivery, db, one_of, read, write
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


# One statement, no savepoint: the unique (session, destination, event) decides (portable:
# SQLite >= 3.24 and PostgreSQL both take ON CONFLICT … DO NOTHING).
_ADD = text(
    "INSERT INTO order_deliveries (session_id, order_id, destination, event, payload, state, "
    "attempts, next_at, last_error, created_at) VALUES (:session_id, :order_id, :destination, "
    ":event, :payload, :state, :attempts, :now, :error, :now) "
    "ON CONFLICT (session_id, destination, event) DO NOTHING"
)
_DROPPED_LOG = "shop.dropped_orders"  # Session.info: (sink, destination, JSON) to log at commit
_SCHEDULED = "shop.scheduled_hand_offs"  # Session.info: (app, state, session id) to send at commit


def _dropped_error(session_id: str) -> str:
    return (
        "dropped: no orderWebhookUrl was set; set it, restart, and run "
        f"`flask --app app orders replay {session_id}`"
    )


def _add(
    sink: Any,
    session_id: str,
    order_id: str,
    destination: str,
    event: str,
    payload: Mapping[str, Any],
) -> bool:
    """Insert one message row in the caller's transaction; False when it was already queued.

    A message to a sink that drops orders (LogSink) is stored `dropped` at once (one try,
    nobody to retry to) and the sink logs it when the transaction commits: no hand-off
    thread, lease or second transaction for an order that goes nowhere.
    """
    if destination == AGENT:
        event = agent_event_key(payload)  # a later status is a new message, not a repeat
    drops = bool(getattr(sink, "drops_orders", False))
    params = {
        "session_id": session_id,
        "order_id": order_id,
        "destination": destination,
        "event": event,
        "payload": (text_payload := json.dumps(payload)),
        "state": "dropped" if drops else "pending",
        "attempts": 1 if drops else 0,
        "error": _dropped_error(session_id) if drops else None,
        "now": clock.epoch(),
    }
    if write(_ADD, params) != 1:
        return False  # already queued by another path (exactly once)
    if drops:
        db.session.info.setdefault(_DROPPED_LOG, []).append((sink, destination, text_payload))
    return True


@sa_event.listens_for(Session, "after_commit")
def _log_dropped(session: Session) -> None:
    """Let the sink log the orders it drops, once their rows are committed."""
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the rows are not committed yet
    for sink, destination, payload in session.info.pop(_DROPPED_LOG, ()):
        metrics.inc("shop_order_deliveries_total", destination=destination, outcome="dropped")
        try:
            sink.deliver(json.loads(payload))  # a copy of what the row holds
        except Exception:  # the row is kept as dropped for `orders replay` either way
            log.exception("logging a dropped order failed; `orders failed` lists it")
    for app, state, session_id in session.info.pop(_SCHEDULED, ()):
        _COURIER.put(app, state, session_id)


@sa_event.listens_for(Session, "after_rollback")
def _forget_dropped(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT rolled back: _add never runs inside one
    session.info.pop(_DROPPED_LOG, None)
    session.info.pop(_SCHEDULED, None)


def _enqueue(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    event: str,
    message: Mapping[str, Any],
    acp_type: str,
    acp_status: str,
    **acp_extra: Any,
) -> bool:
    """Queue `message` for the merchant and, when configured, the ACP event for the agent.

    Return False when the merchant's message was queued before (the unique row is the claim).
    """
    order_id = payload["order"]["id"]
    if not _add(state.sink, session_id, order_id, MERCHANT, event, message):
        return False
    if state.agent_sink is not None:
        acp_event = build_acp_order_event(acp_type, payload, acp_status, **acp_extra)
        _add(state.agent_sink, session_id, order_id, AGENT, acp_type, acp_event)
    return True


def enqueue_order_created(state: ShopState, session_id: str, payload: Mapping[str, Any]) -> None:
    """Queue the merchant's order (and the agent platform's order_create) for a paid session."""
    _enqueue(state, session_id, payload, "order.created", payload, "order_create", "confirmed")


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
    flagged = {
        **payload,
        "event": "order.flagged",
        "flag": {"reason": "dispute", "payment_reference": reference, **(flag or {})},
    }
    _enqueue(state, session_id, payload, "order.flagged", flagged, "order_update", "manual_review")


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
    canceled = {
        **payload,
        "event": "order.canceled",
        "cancel": {
            "reason": reason,
            "payment_reference": reference,
            "amount_refunded": amount_refunded,
        },
    }
    refund = {
        "id": f"adj_refund_{payload['order']['id']}",
        "amount": amount_refunded,
        "occurred_at": clock.iso(clock.epoch()),
        "reason": reason,
    }
    return _enqueue(
        state,
        session_id,
        payload,
        "order.canceled",
        canceled,
        "order_update",
        "canceled",
        refund=refund,
    )


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
            last_error=_dropped_error(session_id),
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


_DUE = (
    select(
        OrderDelivery.id,
        OrderDelivery.destination,
        OrderDelivery.payload,
    )
    .where(
        OrderDelivery.session_id == bindparam("session_id"),
        one_of(OrderDelivery.state, OPEN_STATES),
    )
    .order_by(OrderDelivery.id)
)
# A sink that drops orders (LogSink) is never retried: the lease and the outcome collapse
# into this one conditional statement, and whoever it moved logs the order once.
_DROP = (
    update(OrderDelivery)
    .where(
        OrderDelivery.id == bindparam("d_id"),
        one_of(OrderDelivery.state, OPEN_STATES),
        OrderDelivery.next_at <= bindparam("d_now"),
    )
    .values(
        state="dropped",
        next_at=bindparam("d_now"),
        attempts=OrderDelivery.attempts + 1,
        last_error=bindparam("d_error"),
    )
)


def deliver_session(state: ShopState, session_id: str) -> int:
    """Claim and send every due message of one session in this thread; return how many went."""
    sent = 0
    for delivery_id, destination, payload in read(_DUE, {"session_id": session_id}):
        sink = _sink(state, destination)
        if getattr(sink, "drops_orders", False):
            _drop(sink, delivery_id, destination, session_id, payload)
        elif claim(delivery_id):
            sent += send_claimed(state, delivery_id)
    return sent


def _drop(sink: Any, delivery_id: int, destination: str, session_id: str, payload: str) -> None:
    """Record a message to a sink that drops orders as `dropped`, then let the sink log it."""
    now = clock.epoch()
    dropped = write(
        _DROP,
        {
            "d_id": delivery_id,
            "d_now": now,
            "d_error": _dropped_error(session_id),
        },
    )
    db.session.commit()
    if dropped != 1:
        return  # another worker (or the sweeper) had it
    metrics.inc("shop_order_deliveries_total", destination=destination, outcome="dropped")
    try:
        sink.deliver(json.loads(payload))
    except Exception:  # the row is kept as dropped for `orders replay` either way
        log.exception("logging dropped order for session %s failed", session_id)


class _Courier:
    """One hand-off thread per process, fed by a bounded queue of session ids.

    `schedule` never starts more than one thread, however many orders arrive or however slow
    the receiver is; a full queue leaves the (durable) rows to the sweeper. The thread exits
    when the queue is empty and the next `schedule` starts it again.
    """

    MAX_QUEUED = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[Flask, ShopState, str]] = deque()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def put(self, app: Flask, state: ShopState, session_id: str) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread is not running here
                self._queue.clear()
                self._thread, self._pid = None, os.getpid()
            if len(self._queue) >= self.MAX_QUEUED:
                log.warning("order hand-off queue full; the sweeper will send %s", session_id)
                return
            self._queue.append((app, state, session_id))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="deliver-orders", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                app, state, session_id = self._queue.popleft()
            with app.app_context():
                try:
                    deliver_session(state, session_id)
                except Exception:
                    log.exception(
                        "order hand-off for %s failed; the sweeper will retry", session_id
                    )
                finally:
                    db.session.remove()


_COURIER = _Courier()


def schedule(state: ShopState, session_id: str) -> None:
    """Send a session's queued messages on the hand-off thread (the caller does not wait).

    Inside a transaction (its rows not committed yet) the hand-off waits for the commit.
    """
    if getattr(state.sink, "drops_orders", False) and state.agent_sink is None:
        return  # its rows were stored dropped and logged at commit; the sweeper has the rest
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if db.session().in_transaction():
        db.session.info.setdefault(_SCHEDULED, []).append((app, state, session_id))
    else:
        _COURIER.put(app, state, session_id)


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
