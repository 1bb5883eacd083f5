"""Sending one message: take its lease, call the sink, record delivered / failed / gave_up."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, select, update

from shop import clock, fast_json, metrics
from shop.orders.outbox import MERCHANT, OPEN_STATES, _dropped_error
from shop.orders.retry_schedule import LEASE_SECONDS, MAX_ATTEMPTS, backoff
from shop.state import ShopState
from shop.storage import one_of, read, transaction
from shop.storage.models import OrderDelivery
from shop.storage.transaction import write

log = logging.getLogger("shop.delivery")

log = logging.getLogger("shop.delivery")


def _sink(state: ShopState, destination: str) -> Any:
    return state.sink if destination == MERCHANT else state.agent_sink


def claim(delivery_id: int) -> bool:
    """Take the lease on one message; False when another worker has it or it is done."""
    now = clock.epoch()
    taken = (
        transaction.execute(
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
    transaction.commit()
    return taken


def _record(delivery_id: int, **values: Any) -> None:
    transaction.execute(
        update(OrderDelivery).where(OrderDelivery.id == delivery_id).values(**values)
    )
    transaction.commit()


def send_claimed(state: ShopState, delivery_id: int) -> bool:
    """Send a claimed message and record the outcome; True when it was delivered."""
    # Read outside any transaction (shop.storage.read): on SQLite a transaction holds the write
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
        sink.deliver(fast_json.loads(payload))
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
    metrics.event(
        "order_delivered", order_id=order_id, session_id=session_id, destination=destination
    )
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
        compact = fast_json.dumps(fast_json.loads(payload))
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
    metrics.event(
        "order_delivery_failed",
        order_id=order_id,
        session_id=session_id,
        destination=destination,
        attempt=attempts,
        gave_up=gave_up,
        reason=type(exc).__name__,
    )
    transaction.rollback()
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
    transaction.commit()
    if dropped != 1:
        return  # another worker (or the sweeper) had it
    metrics.inc("shop_order_deliveries_total", destination=destination, outcome="dropped")
    try:
        sink.deliver(fast_json.loads(payload))
    except Exception:  # the row is kept as dropped for `orders replay` either way
        log.exception("logging dropped order for session %s failed", session_id)
