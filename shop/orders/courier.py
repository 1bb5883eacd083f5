"""When messages go: from the request that committed them, or one hand-off thread per
process; and a sweeper per worker for retries that are due, started when the worker boots.

A request that commits an order (a completed checkout, a provider webhook) sends it itself
as it ends, once its answer is stored, when the destination answers quickly (its last answer
began within transport.QUICK_SECONDS): no other thread wakes, and the worker's one thread
does the work without trading the GIL with a second one (docs/decisions.md, issue 12). It
waits at most PATIENCE_SECONDS for each answer to begin; an answer still to come then goes to
the hand-off thread, which waits for it and records it, so a receiver that turns slow delays
one answer by PATIENCE_SECONDS at most. Orders to a destination that is not quick, and
orders committed outside a request (sweeper, CLI), go to the hand-off thread at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from flask import Flask, current_app, g, has_request_context

from shop import fast_json, metrics
from shop.orders.outbox import _DROPPED_LOG, _HANDED_OFF, Message
from shop.orders.retry_schedule import sweep_seconds
from shop.orders.sending import Waiting, claim, due, finish_all, send_all, send_quickly
from shop.orders.transport import AnswerPending
from shop.state import ShopState
from shop.storage import health, transaction

log = logging.getLogger("shop.delivery")

BATCH = 64  # messages the hand-off thread takes from its queue at a time
PATIENCE_SECONDS = 0.02  # a request waits this long for an answer it sent to begin
_OWN = "shop.orders_to_send"  # flask.g: the messages this request committed, sent as it ends


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
        if has_request_context():  # sent as the request ends (_send_own)
            g.setdefault(_OWN, []).extend(handed_off)
            return
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _COURIER.put(app, handed_off)


def _send_own(app: Flask) -> None:
    """Send what this request committed to quick destinations; hand the rest to the thread.

    Runs as the request ends (teardown), after its answer and every record are stored; never
    raises: a message it could not send or record keeps its lease, and the sweeper sends it
    once the lease ends.
    """
    messages = g.pop(_OWN, None)
    if not messages:
        return
    left: list[Message] = messages
    waiting: Waiting = []
    try:
        left, waiting = send_quickly(app.extensions["shop"], messages, PATIENCE_SECONDS)
    except Exception as exc:
        left = []
        if health.failure(exc) is None:  # a failing database is said once, not traced
            log.exception("order hand-off failed; the sweeper will retry once leases end")
    finally:
        transaction.reset()
    if left:
        _COURIER.put(app, left)
    if waiting:
        _COURIER.put(app, waiting)


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
        # (app, message) to send, or (app, (message, its answer to come)) to finish
        self._queue: deque[tuple[Flask, Message | tuple[Message, AnswerPending]]] = deque()
        self._thread: threading.Thread | None = None
        self._busy = False

    def put(self, app: Flask, messages: list[Message] | Waiting) -> None:
        with self._cond:
            if len(self._queue) >= self.MAX_QUEUED:
                log.warning(
                    "order hand-off queue full; a sweeper will send %s when its lease ends",
                    ", ".join((m if isinstance(m, Message) else m[0]).order_id for m in messages),
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

    def _take(self) -> list[tuple[Flask, Message | tuple[Message, AnswerPending]]]:
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
            # one app in production; tests run several
            by_app: dict[Flask, tuple[list[Message], Waiting]] = {}
            for app, item in batch:
                to_send, to_finish = by_app.setdefault(app, ([], []))
                if isinstance(item, Message):
                    to_send.append(item)
                else:
                    to_finish.append(item)
            for app, (to_send, to_finish) in by_app.items():
                self._send(app, to_send, to_finish)

    @staticmethod
    def _send(app: Flask, messages: list[Message], waiting: Waiting) -> None:
        with app.app_context():
            try:
                if waiting:
                    finish_all(app.extensions["shop"], waiting)
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

    @app.teardown_request
    def _orders_out(_error: BaseException | None) -> None:
        _send_own(app)

    @app.before_request
    def _start_sweeper() -> None:
        current = app.extensions.get("shop.sweeper")
        if current is not None and current.alive_here():
            return
        if not app.config.get("TESTING_NO_SWEEPER"):
            start_sweeper(app)
