"""When messages go: one hand-off thread per process after each commit, and a sweeper for
retries that are due."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque

from flask import Flask, current_app
from sqlalchemy import select

from shop import clock, fast_json, metrics
from shop.orders.outbox import _DROPPED_LOG, _SCHEDULED, OPEN_STATES
from shop.orders.retry_schedule import sweep_seconds
from shop.orders.sending import claim, deliver_session, send_claimed
from shop.state import ShopState
from shop.storage import health, transaction
from shop.storage.models import OrderDelivery

log = logging.getLogger("shop.delivery")

log = logging.getLogger("shop.delivery")


@transaction.on_commit
def _log_dropped() -> None:
    """Let the sink log the orders it drops, once their rows are committed."""
    info = transaction.info()
    for sink, destination, message, payload in info.pop(_DROPPED_LOG, ()):
        metrics.inc("shop_order_deliveries_total", destination=destination, outcome="dropped")
        try:
            log_dropped = getattr(sink, "log_dropped", None)
            if log_dropped is not None:
                log_dropped(message, payload)  # logs the row's own text, not an encoding of it
            else:
                sink.deliver(fast_json.loads(payload))  # a copy of what the row holds
        except Exception:  # the row is kept as dropped for `orders replay` either way
            log.exception("logging a dropped order failed; `orders failed` lists it")
    for app, state, session_id in info.pop(_SCHEDULED, ()):
        _COURIER.put(app, state, session_id)


@transaction.on_rollback
def _forget_dropped() -> None:
    transaction.info().pop(_DROPPED_LOG, None)
    transaction.info().pop(_SCHEDULED, None)


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
                except Exception as exc:
                    if health.failure(exc) is None:  # a failing database is said once, not traced
                        log.exception(
                            "order hand-off for %s failed; the sweeper will retry", session_id
                        )
                finally:
                    transaction.reset()


_COURIER = _Courier()


def schedule(state: ShopState, session_id: str) -> None:
    """Send a session's queued messages on the hand-off thread (the caller does not wait).

    Inside a transaction (its rows not committed yet) the hand-off waits for the commit.
    """
    if getattr(state.sink, "drops_orders", False) and state.agent_sink is None:
        return  # its rows were stored dropped and logged at commit; the sweeper has the rest
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if transaction.active():
        transaction.info().setdefault(_SCHEDULED, []).append((app, state, session_id))
    else:
        _COURIER.put(app, state, session_id)


def sweep(state: ShopState, limit: int = 50) -> int:
    """Retry every due message once (failed, pending, or leased by a dead worker)."""
    ids = (
        transaction.execute(
            select(OrderDelivery.id)
            .where(OrderDelivery.state.in_(OPEN_STATES), OrderDelivery.next_at <= clock.epoch())
            .order_by(OrderDelivery.next_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    transaction.commit()
    return sum(claim(i) and send_claimed(state, i) for i in ids)


def _sweeper(app: Flask, interval: float) -> None:
    stop: threading.Event = app.extensions["shop.sweeper_stop"]
    while not stop.wait(interval):
        with app.app_context():
            try:
                sweep(app.extensions["shop"])
            except Exception as exc:
                if health.failure(exc) is None:  # a failing database is said once, not traced
                    log.exception("delivery sweep failed; will try again")
            finally:
                transaction.reset()


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
