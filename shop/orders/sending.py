"""Sending messages: hold a lease, call the sink, record delivered / failed / gave_up.

A `Message` is a row as the sender needs it, keyed by its unique (session, destination,
event), so nothing is read again before it goes. Whoever holds a row's lease is the one who
sends it: the hand-off thread holds the lease its paying transaction inserted the row with;
the sweeper and `orders replay` take leases with one conditional UPDATE per row, all in one
transaction. A lease is `state = 'delivering'` with `next_at` in the future; it is still ours
while `next_at` is the value we set. Before a send that could outlast the lease, the lease is
taken again; if someone else has it, the message is left to them.

Each delivered message is recorded in a transaction of its own at once: a 2xx whose record
waited for other sends would be sent again after a crash. Failures are not sent again until
their backoff has passed, so their records may wait for the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, select, update

from shop import clock, fast_json, metrics
from shop.orders.outbox import MERCHANT, OPEN_STATES, Message, _dropped_error
from shop.orders.retry_schedule import MAX_ATTEMPTS, backoff, lease_seconds, send_seconds
from shop.orders.transport import AnswerPending
from shop.state import ShopState
from shop.storage import one_of, read, transaction
from shop.storage.models import OrderDelivery
from shop.storage.transaction import write

log = logging.getLogger("shop.delivery")

RENEW_MARGIN_SECONDS = 2  # a send starts only with its timeout and this much lease left


def _sink(state: ShopState, destination: str) -> Any:
    return state.sink if destination == MERCHANT else state.agent_sink


_KEY = (
    OrderDelivery.session_id == bindparam("m_session"),
    OrderDelivery.destination == bindparam("m_destination"),
    OrderDelivery.event == bindparam("m_event"),
)
_OURS = (*_KEY, OrderDelivery.state == "delivering", OrderDelivery.next_at == bindparam("m_lease"))
# Take a due row (pending, failed, or leased by a sender that died).
_CLAIM = (
    update(OrderDelivery)
    .where(
        *_KEY, one_of(OrderDelivery.state, OPEN_STATES), OrderDelivery.next_at <= bindparam("m_now")
    )
    .values(state="delivering", next_at=bindparam("m_new"), attempts=OrderDelivery.attempts + 1)
)
# Keep a lease we hold for longer (before a send that could outlast it).
_RENEW = update(OrderDelivery).where(*_OURS).values(next_at=bindparam("m_new"))
# Delivered is recorded whoever holds the lease now: it is true, and a sender that took the
# row over records its own failure only while it still holds that lease.
_DELIVERED = (
    update(OrderDelivery)
    .where(*_KEY, OrderDelivery.state != "delivered")
    .values(state="delivered", last_error=None)
)
_FAILED = (
    update(OrderDelivery)
    .where(*_OURS)
    .values(
        state=bindparam("m_state"), next_at=bindparam("m_next"), last_error=bindparam("m_error")
    )
)
_DUE_COLUMNS = (
    OrderDelivery.session_id,
    OrderDelivery.order_id,
    OrderDelivery.destination,
    OrderDelivery.event,
    OrderDelivery.payload,
    OrderDelivery.attempts,
)
_DUE = (
    select(*_DUE_COLUMNS)
    .where(one_of(OrderDelivery.state, OPEN_STATES), OrderDelivery.next_at <= bindparam("m_now"))
    .order_by(OrderDelivery.next_at)
    .limit(bindparam("m_limit"))
)
_DUE_OF_SESSION = (
    select(*_DUE_COLUMNS)
    .where(
        OrderDelivery.session_id == bindparam("m_session"),
        one_of(OrderDelivery.state, OPEN_STATES),
        OrderDelivery.next_at <= bindparam("m_now"),
    )
    .order_by(OrderDelivery.id)
)
# A sink that drops orders (LogSink) is never retried: the lease and the outcome collapse
# into this one conditional statement, and whoever it moved logs the order once.
_DROP = (
    update(OrderDelivery)
    .where(
        *_KEY, one_of(OrderDelivery.state, OPEN_STATES), OrderDelivery.next_at <= bindparam("m_now")
    )
    .values(
        state="dropped",
        next_at=bindparam("m_now"),
        attempts=OrderDelivery.attempts + 1,
        last_error=bindparam("m_error"),
    )
)


def _key(message: Message) -> dict[str, Any]:
    return {
        "m_session": message.session_id,
        "m_destination": message.destination,
        "m_event": message.event,
    }


def due(limit: int = 50, session_id: str | None = None) -> list[Message]:
    """Return due rows (oldest first), read outside any transaction; not leased yet.

    A `Message` here holds the row's tries so far, and no lease (`claim` takes them).
    """
    now = clock.epoch()
    if session_id is None:
        rows = read(_DUE, {"m_now": now, "m_limit": limit})
    else:
        rows = read(_DUE_OF_SESSION, {"m_now": now, "m_session": session_id})
    return [Message(s, o, d, e, p, a, 0) for s, o, d, e, p, a in rows]


def claim(state: ShopState, rows: Sequence[Message]) -> list[Message]:
    """Take the leases on due rows in one transaction; return the ones we got, leased.

    Rows for a sink that drops orders (LogSink) are recorded `dropped` instead, and logged.
    """
    if not rows:
        return []
    now = clock.epoch()
    taken, dropped = [], []
    for row in rows:
        sink = _sink(state, row.destination)
        lease = now + lease_seconds(getattr(sink, "timeout", None))
        if getattr(sink, "drops_orders", False):
            params = {**_key(row), "m_now": now, "m_error": _dropped_error(row.session_id)}
            if write(_DROP, params) == 1:
                dropped.append((sink, row))
        elif write(_CLAIM, {**_key(row), "m_now": now, "m_new": lease}) == 1:
            taken.append(replace(row, attempts=row.attempts + 1, lease=lease))
    transaction.commit()
    for sink, row in dropped:
        metrics.inc("shop_order_deliveries_total", destination=row.destination, outcome="dropped")
        try:
            sink.deliver(fast_json.loads(row.payload))
        except Exception:  # the row is kept as dropped for `orders replay` either way
            log.exception("logging dropped order for session %s failed", row.session_id)
    return taken


def send_all(state: ShopState, messages: Iterable[Message]) -> int:
    """Send leased messages one after another; return how many were delivered.

    No transaction is open while a sink works: on SQLite one would hold the write lock, and a
    slow receiver must not stall every checkout while it answers.
    """
    delivered = 0
    failures: list[tuple[Message, str, str]] = []
    try:
        for message in messages:
            outcome = _send(state, message)
            if outcome is True:
                delivered += 1
            elif isinstance(outcome, tuple):
                failures.append((message, *outcome))
    finally:
        _record_failures(failures)
    return delivered


Waiting = list[tuple[Message, AnswerPending]]


def send_quickly(
    state: ShopState, messages: Iterable[Message], patience: float
) -> tuple[list[Message], Waiting]:
    """Send the messages whose destination answers quickly, waiting at most `patience` seconds
    for each answer to begin; record their outcomes as `send_all` does.

    Return what is left for the hand-off thread: the messages not tried (a destination not
    quick, or any after one whose answer is still to come) and the (message, answer to come)
    pairs whose `finish_all` records them.
    """
    left: list[Message] = []
    waiting: Waiting = []
    failures: list[tuple[Message, str, str]] = []
    try:
        for message in messages:
            if waiting or not getattr(_sink(state, message.destination), "quick", False):
                left.append(message)
                continue
            outcome = _send(state, message, patience)
            if isinstance(outcome, AnswerPending):
                waiting.append((message, outcome))
            elif isinstance(outcome, tuple):
                failures.append((message, *outcome))
    finally:
        _record_failures(failures)
    return left, waiting


def finish_all(state: ShopState, waiting: Waiting) -> int:
    """Wait for the answers `send_quickly` left and record them; return how many delivered."""
    delivered = 0
    failures: list[tuple[Message, str, str]] = []
    try:
        for message, pending in waiting:
            try:
                pending.finish()
            except Exception as exc:
                failures.append((message, *_reason(exc)))
                continue
            if _sent(_sink(state, message.destination), message):
                delivered += 1
    finally:
        _record_failures(failures)
    return delivered


def _send(
    state: ShopState, message: Message, patience: float | None = None
) -> bool | tuple[str, str] | AnswerPending | None:
    """Send one message: True when delivered (and recorded), (reason, error class) if not.

    None: the lease went to someone else before the send, so the message is theirs. False:
    a sink that drops orders took it (recorded `dropped`). AnswerPending: sent with
    `patience`, and its answer is still to come (nothing recorded yet).
    """
    sink = _sink(state, message.destination)
    timeout = getattr(sink, "timeout", None)
    if message.lease - clock.epoch() < send_seconds(timeout) + RENEW_MARGIN_SECONDS:
        renewed = _renew(message, lease_seconds(timeout))
        if renewed is None:
            return None
        message = renewed
    try:
        if sink is None:
            raise RuntimeError(f"no {message.destination} destination is configured any more")
        send_stored = getattr(sink, "send_stored", None)
        if patience is not None and send_stored is not None:
            send_stored(message.payload, message.order_id, message.event, patience=patience)
        elif send_stored is not None:
            send_stored(message.payload, message.order_id, message.event)
        else:
            sink.deliver(fast_json.loads(message.payload))
    except AnswerPending as pending:
        return pending
    except Exception as exc:  # a sink must never break the checkout: record and retry
        return _reason(exc)
    return _sent(sink, message)


def _reason(exc: BaseException) -> tuple[str, str]:
    return f"{type(exc).__name__}: {exc}"[:500], type(exc).__name__


def _sent(sink: Any, message: Message) -> bool:
    """Record a message its sink took: delivered (True), or dropped by a sink that only logs."""
    if getattr(sink, "drops_orders", False):  # a sink that only logs, given a leased row
        _record_failures([(message, _dropped_error(message.session_id), "")], dropped=True)
        metrics.inc(
            "shop_order_deliveries_total", destination=message.destination, outcome="dropped"
        )
        return False
    write(_DELIVERED, _key(message))
    transaction.commit()
    metrics.inc("shop_order_deliveries_total", destination=message.destination, outcome="delivered")
    metrics.event(
        "order_delivered",
        order_id=message.order_id,
        session_id=message.session_id,
        destination=message.destination,
    )
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s for session %s delivered to the %s",
            message.event,
            message.order_id,
            message.session_id,
            message.destination,
        )
    return True


def _renew(message: Message, seconds: int) -> Message | None:
    lease = clock.epoch() + seconds
    renewed = write(_RENEW, {**_key(message), "m_lease": message.lease, "m_new": lease}) == 1
    transaction.commit()
    return replace(message, lease=lease) if renewed else None


def _record_failures(failures: list[tuple[Message, str, str]], dropped: bool = False) -> None:
    """Record failures in one transaction, then log one prominent line (and count) each.

    Counted after the commit, so a scrape that sees the count sees the row's state too.
    """
    if not failures:
        return
    now = clock.epoch()
    params, logs = [], []
    for message, reason, error in failures:
        if dropped:
            state, next_at = "dropped", now
        else:
            gave_up = message.attempts >= MAX_ATTEMPTS
            logs.append((message, reason, gave_up, error))
            state, next_at = (
                ("gave_up", now) if gave_up else ("failed", now + backoff(message.attempts))
            )
        params.append(
            {
                **_key(message),
                "m_lease": message.lease,
                "m_state": state,
                "m_next": next_at,
                "m_error": reason,
            }
        )
    failures.clear()
    for values in params:
        write(_FAILED, values)
    transaction.commit()
    for entry in logs:
        _log_failure(*entry)


def _log_failure(message: Message, reason: str, gave_up: bool, error: str) -> None:
    """Log one prominent line: the next try, or (after the last) giving up with the order."""
    if gave_up:
        # The whole payload goes in the line: the log keeps the order even after purge.
        compact = fast_json.dumps(fast_json.loads(message.payload))
        log.error(
            "ORDER DELIVERY FAILED order=%s session=%s to=%s event=%s attempt=%d "
            "reason=%s — GIVING UP after %d tries; replay with `flask --app app orders "
            "replay %s`; payload=%s",
            message.order_id,
            message.session_id,
            message.destination,
            message.event,
            message.attempts,
            reason,
            message.attempts,
            message.session_id,
            compact,
        )
    else:
        log.error(
            "ORDER DELIVERY FAILED order=%s session=%s to=%s event=%s attempt=%d "
            "reason=%s — retrying in %ds",
            message.order_id,
            message.session_id,
            message.destination,
            message.event,
            message.attempts,
            reason,
            backoff(message.attempts),
        )
    metrics.inc(
        "shop_order_deliveries_total",
        destination=message.destination,
        outcome="gave_up" if gave_up else "failed",
    )
    metrics.event(
        "order_delivery_failed",
        order_id=message.order_id,
        session_id=message.session_id,
        destination=message.destination,
        attempt=message.attempts,
        gave_up=gave_up,
        reason=error,
    )


def deliver_session(state: ShopState, session_id: str) -> int:
    """Claim and send every due message of one session in this thread; return how many went."""
    return send_all(state, claim(state, due(session_id=session_id)))
