"""When messages go: one hand-off thread per process after each commit, and a sweeper per
worker for retries that are due, started when the worker boots."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from flask import Flask, current_app

from shop import fast_json, metrics
from shop.orders.outbox import _DROPPED_LOG, _HANDED_OFF, Message
from shop.orders.retry_schedule import sweep_seconds
from shop.orders.sending import claim, due, send_all
from shop.state import ShopState
from shop.storage import health, transaction

log = logging.getLogger("shop.delivery")

BATCH = 64  # messages the hand-off thread takes from its queue at a time


@transaction.on_commit
def _after_commit() -> None:
    """Log the orders a sink drops, and hand the rest to the hand-off thread, once committed."""
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
    handed_off = info.pop(_HANDED_OFF, None)
    if handed_off:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _COURIER.put(app, handed_off)


@transaction.on_rollback
def _forget() -> None:
    transaction.info().pop(_DROPPED_LOG, None)
    transaction.info().pop(_HANDED_OFF, None)


class _Courier:
    """One hand-off thread per process, fed by a bounded queue of leased messages.

    `put` never starts more than one thread, however many orders arrive or however slow the
    receiver is; a full queue leaves the (durable, leased) rows to the sweepers once their
    leases run out. The thread takes what is queued in batches and waits for more; after
    `IDLE_SECONDS` with nothing to send it exits, and the next `put` starts it again. It
    stays between orders so that its database connections and its kept-alive connection to
    the receiver stay warm (a thread per burst opened new ones for nearly every order).
    """

    MAX_QUEUED = 10_000
    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[tuple[Flask, Message]] = deque()
        self._thread: threading.Thread | None = None
        self._busy = False

    def put(self, app: Flask, messages: list[Message]) -> None:
        with self._cond:
            if len(self._queue) >= self.MAX_QUEUED:
                log.warning(
                    "order hand-off queue full; a sweeper will send %s when its lease ends",
                    ", ".join(m.order_id for m in messages),
                )
                return
            self._queue.extend((app, m) for m in messages)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="deliver-orders", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued has been sent (or the timeout); True when it has."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _take(self) -> list[tuple[Flask, Message]]:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            deadline = time.monotonic() + self.IDLE_SECONDS
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._thread = None
                    return []
                self._cond.wait(left)
            batch = []
            while self._queue and len(batch) < BATCH:
                batch.append(self._queue.popleft())
            self._busy = True
            return batch

    def _run(self) -> None:
        while batch := self._take():
            by_app: dict[Flask, list[Message]] = {}  # one app in production; tests run several
            for app, message in batch:
                by_app.setdefault(app, []).append(message)
            for app, messages in by_app.items():
                self._send(app, messages)

    @staticmethod
    def _send(app: Flask, messages: list[Message]) -> None:
        with app.app_context():
            try:
                send_all(app.extensions["shop"], messages)
            except Exception as exc:
                if health.failure(exc) is None:  # a failing database is said once, not traced
                    log.exception("order hand-off failed; the sweeper will retry once leases end")
            finally:
                transaction.reset()


_COURIER = _Courier()


def wait_for_hand_offs(timeout: float = 10.0) -> bool:
    """Wait until this process's hand-off thread has sent what was queued; True when done."""
    return _COURIER.wait_idle(timeout)


def sweep(state: ShopState, limit: int = 50) -> int:
    """Send every due message once (failed, or leased by a sender that died); return how many."""
    return send_all(state, claim(state, due(limit)))


class _Sweeper:
    """A worker's sweeper thread: sweeps at start, then every `interval` seconds."""

    def __init__(self, app: Flask, interval: float) -> None:
        self.app, self.interval = app, interval
        self.stop = threading.Event()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="order-sweeper", daemon=True)

    def _run(self) -> None:
        while True:
            with self.app.app_context():
                try:
                    sweep(self.app.extensions["shop"])
                except Exception as exc:
                    if health.failure(exc) is None:  # a failing database: said once, not traced
                        log.exception("delivery sweep failed; will try again")
                finally:
                    transaction.reset()
            if self.stop.wait(self.interval):
                return

    def alive_here(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive()


_SWEEPERS: list[_Sweeper] = []  # this process's (one per app that sweeps)
_SWEEPERS_LOCK = threading.Lock()


def start_sweeper(app: Flask) -> None:
    """Start the app's sweeper thread in this process unless one runs here already."""
    with _SWEEPERS_LOCK:
        current = app.extensions.get("shop.sweeper")
        if current is not None and current.alive_here():
            return
        sweeper = _Sweeper(app, app.extensions["shop.sweep_seconds"])
        app.extensions["shop.sweeper"] = sweeper
        _SWEEPERS.append(sweeper)
        sweeper.thread.start()


def _before_fork() -> None:
    """A process that forks is a master (gunicorn --preload): its children sweep, it does not.

    Its sweepers stop before the fork, so no child inherits a lock one of them held.
    """
    with _SWEEPERS_LOCK:
        running = [s for s in _SWEEPERS if s.alive_here()]
        for sweeper in running:
            sweeper.stop.set()
    for sweeper in running:
        sweeper.thread.join()


def _in_child() -> None:
    _COURIER._reset()  # the parent's thread (and any lock it held) did not come along
    global _SWEEPERS_LOCK
    _SWEEPERS_LOCK = threading.Lock()
    with _SWEEPERS_LOCK:
        apps = [s.app for s in _SWEEPERS]
        _SWEEPERS.clear()
    for app in dict.fromkeys(apps):
        start_sweeper(app)


os.register_at_fork(before=_before_fork, after_in_child=_in_child)


# gunicorn's arbiter sets this in its own environment, which its workers inherit: a mark of
# the server, not a setting (docs/configuration.md lists what a merchant sets).
_SERVER_MARK = "SERVER_SOFTWARE"


def _under_gunicorn() -> bool:
    return os.environ.get(_SERVER_MARK, "").startswith("gunicorn/")


def init_app(app: Flask) -> None:
    """Sweep for due messages in every worker: from boot under gunicorn, else on first request.

    Under gunicorn a worker loads the app when it boots, so its sweeper starts then and orders
    left by a crash go out without waiting for traffic. With `--preload` the master loads it
    and forks: the master's sweeper stops at the fork and each worker starts its own. Elsewhere
    (`flask run`, another server) the first request starts it; tests and CLI commands, which
    create apps of their own, never start one (`TESTING_NO_SWEEPER`, or no request).
    """
    app.extensions["shop.sweep_seconds"] = sweep_seconds(app.extensions["shop"].settings.env)
    if _under_gunicorn():
        start_sweeper(app)

    @app.before_request
    def _start_sweeper() -> None:
        current = app.extensions.get("shop.sweeper")
        if current is not None and current.alive_here():
            return
        if not app.config.get("TESTING_NO_SWEEPER"):
            start_sweeper(app)
