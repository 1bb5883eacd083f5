"""A failed start: one sentence on stderr, and a gunicorn that stops instead of looping.

With gunicorn.conf.py, a worker that fails while the store is already serving (a file broken
after the last reload) exits 1 instead: gunicorn replaces it and the other workers go on.

gunicorn respawns a worker that exits with any code but two: WORKER_BOOT_ERROR (3) and
APP_LOAD_ERROR (4) make the arbiter halt (gunicorn/arbiter.py, `reap_workers`). But every
worker fails the same way, and when a second one exits with 4 while the arbiter is already
halting, `halt()` raises HaltServer again and prints a traceback (and exits 1). So, under
gunicorn, the first worker of an arbiter to fail says the sentence and exits 4; the others
leave quietly when the arbiter's SIGTERM arrives.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import sys
import tempfile
import time
from typing import Any, NoReturn

APP_LOAD_ERROR = 4
# How long a later worker waits for the halting arbiter's SIGTERM before leaving anyway.
WAIT_FOR_HALT_SECONDS = 5.0
# A marker older than this is from an earlier gunicorn that had the same pid.
MARKER_FRESH_SECONDS = 60.0
_MARKER_PREFIX = "shop-start-failed-"
# A file path set by gunicorn.conf.py; the first worker that loads the app creates the file.
# Once it exists, a failing worker must not halt the store.
SERVING_VARIABLE = "SHOP_SERVING"
RESPAWN_PAUSE_SECONDS = 2.0


def fail_start(message: str) -> NoReturn:
    """Print 'shop cannot start: <message>' once and exit so gunicorn halts."""
    worker = _gunicorn_worker()
    if worker is not None and store_is_serving():
        _fail_one_worker(message)
    if worker is not None and not _first_to_fail(os.getppid()):
        _leave_quietly(worker)
    print(f"shop cannot start: {message}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR)


def store_is_serving() -> bool:
    """True when another worker of this gunicorn has loaded the app (its marker file exists)."""
    marker = os.environ.get(SERVING_VARIABLE)
    return bool(marker) and os.path.exists(marker)


def _fail_one_worker(message: str) -> NoReturn:
    """A worker replacing another in a running store: say why, and let gunicorn try again.

    Halting would take down the workers still serving (gunicorn.conf.py's post_worker_init
    makes the SHOP_SERVING file). A file broken after the last good reload stops only this
    worker; the pause keeps gunicorn from respawning it in a tight loop until it is fixed.
    """
    print(
        f"shop cannot start this worker (the others keep serving): {message}",
        file=sys.stderr,
        flush=True,
    )
    time.sleep(RESPAWN_PAUSE_SECONDS)
    raise SystemExit(1)


def _gunicorn_worker() -> Any:
    """Return the gunicorn worker loading this app, or None (plain python, flask, --preload).

    A booting worker has installed its own SIGTERM handler, the bound `handle_exit`.
    """
    worker = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if type(worker).__module__.startswith("gunicorn.workers") and hasattr(worker, "alive"):
        return worker
    return None


def _first_to_fail(arbiter_pid: int) -> bool:
    """Claim the failure for this arbiter: True for the first worker only (O_EXCL decides)."""
    marker = os.path.join(tempfile.gettempdir(), f"{_MARKER_PREFIX}{arbiter_pid}")
    for _attempt in range(2):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            _forget_stale_markers()
            return True
        except FileExistsError:
            try:
                if time.time() - os.stat(marker).st_mtime < MARKER_FRESH_SECONDS:
                    return False
                os.unlink(marker)  # stale: a long-gone arbiter with the same pid
            except FileNotFoundError:
                pass
        except OSError:
            return True  # no usable temp dir: say it (gunicorn may print a traceback)
    return True


def _forget_stale_markers() -> None:
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{_MARKER_PREFIX}*")):
        with contextlib.suppress(OSError):
            if time.time() - os.stat(path).st_mtime >= MARKER_FRESH_SECONDS:
                os.unlink(path)


def _leave_quietly(worker: Any) -> NoReturn:
    # gunicorn's SIGTERM handler (handle_exit) only sets worker.alive = False: a SIGTERM that
    # came while this worker was still importing shows there. Otherwise the arbiter's SIGTERM
    # ends the wait at once through our handler.
    def _exit(_signum: int, _frame: Any) -> None:
        os._exit(0)

    signal.signal(signal.SIGTERM, _exit)
    deadline = time.monotonic() + WAIT_FOR_HALT_SECONDS
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)
