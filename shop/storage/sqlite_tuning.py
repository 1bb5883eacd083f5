"""SQLite tuning: the pragmas, BEGIN IMMEDIATE, and one queue for writers across workers.

Applied by `shop.storage.models.init_db` to SQLite engines only; PostgreSQL engines are left alone.
docs/decisions.md (Storage) gives the durability trade-off of these pragmas.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

try:
    import fcntl
except ImportError:  # not POSIX: threads still queue; processes fall back to busy_timeout
    fcntl = None  # type: ignore[assignment]

BUSY_TIMEOUT_SECONDS = 10.0
INCREMENTAL_VACUUM = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
_HELD = "shop.writer_queue"  # connection info: this connection holds the queue's turn
_QUEUES: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()
_own_transaction: Callable[[], bool] = lambda: False  # noqa: E731 (shop.storage.transaction sets it)


def set_own_transaction_check(check: Callable[[], bool]) -> None:
    """Tell the Session's BEGIN how to see that this thread holds shop.transaction's turn."""
    global _own_transaction
    _own_transaction = check


def writer_queue(engine: Engine) -> WriterQueue:
    """The writer queue of a tuned SQLite engine (storage.transaction takes turns in it)."""
    return _QUEUES[engine]


class WriterQueue:
    """Let one transaction at a time, across all of a store's worker processes, write.

    Every transaction here is a writer (BEGIN IMMEDIATE). When two collide, SQLite's busy
    handler sleeps 1, 2, 5, 10 … ms between looks, so under load those sleeps, not the work,
    set the latency and leave the CPUs idle. Instead, the threads of a process queue on a
    lock, and the processes on an flock of `<database>.lock`; both wake a waiter the moment
    the holder's connection goes back to the pool. Waiting threads wait at most the busy
    timeout; the flock wait itself is only as long as the transaction ahead, since no
    transaction waits on the network (docs/decisions.md). SQLite's busy timeout still covers
    processes that do not take the flock (the sqlite3 shell, a backup).
    """

    def __init__(self, lock_path: str | None, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout
        self._lock_path = lock_path if fcntl is not None else None
        self._fd: int | None = None
        self._pid: int | None = None

    def acquire(self) -> None:
        """Wait for the turn to write; raise sqlite3.OperationalError after the timeout."""
        if not self._lock.acquire(timeout=self._timeout):
            raise sqlite3.OperationalError(
                f"database is locked: another transaction of this process held it for "
                f"{self._timeout:g} s"
            )
        if self._lock_path is None:
            return
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        """Give the turn to the next waiting transaction."""
        try:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _file(self) -> int:
        # One descriptor per process: a child forked with the parent's descriptor would share
        # its lock instead of queueing for it.
        if self._pid != os.getpid():
            assert self._lock_path is not None
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        assert self._fd is not None
        return self._fd


def tune(engine: Engine) -> None:
    """Set the pragmas and the writer queue on a fresh SQLite engine (before it connects)."""
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    on_disk = bool(database) and database != ":memory:" and not database.startswith("file:")
    queue = _QUEUES[engine] = WriterQueue(f"{database}.lock" if on_disk else None)
    event.listen(engine, "connect", _engine_pragmas)
    event.listen(engine, "begin", lambda conn: _begin(conn, queue))
    event.listen(engine.pool, "checkin", _release)
    event.listen(engine.pool, "close", _release)


def _pragmas(dbapi_connection: Any, connection_record: Any, new_files: bool = False) -> None:
    """A busy timeout, then WAL for readers beside the writer, synchronous=NORMAL.

    The busy timeout comes first, and the switch to WAL is retried: on a brand-new file it
    upgrades a shared lock to an exclusive one, and when several workers start at once
    SQLite answers "database is locked" at once to all but one, without waiting the busy
    timeout (waiting could deadlock). Measured: 3 to 5 of 800 such switches failed, with or
    without a busy timeout; tests/test_storage_startup.py starts them together, repeatedly.
    With `new_files` (the engine's connections, which create the tables) a file with no
    pages yet gets auto_vacuum=INCREMENTAL, before the WAL switch writes its first page
    (shop.storage.space gives purged pages back to the disk with it). synchronous=NORMAL in
    WAL mode skips the fsync on each commit (it happens at checkpoints): a power cut can lose
    the last commits, never corrupt the file (docs/decisions.md).
    """
    # Autocommit at the driver level, so the BEGIN IMMEDIATE below is the only BEGIN sent.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    # Only where it is not set: setting it on a file that has it rewrites the header, which
    # waits for the write lock; on a file that has pages and tables it changes nothing.
    if new_files and cursor.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL_VACUUM:
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch to WAL (a no-op once the file is WAL), retrying a lock refused without a wait."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.001, 0.01))


def _engine_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    _pragmas(dbapi_connection, connection_record, new_files=True)


def open_connection(database: str) -> sqlite3.Connection:
    """Open an autocommit connection for one thread's reads (shop.storage.read) or writes.

    A reader never sends BEGIN: each SELECT is its own WAL read snapshot of the last commit,
    and needs no turn in the writer queue. A writer (shop.storage.transaction) sends BEGIN IMMEDIATE
    itself, in its turn.
    """
    # mode=rw: a file that is gone is an error here, never a new empty database (a thread
    # opening its first connection after the file was removed would otherwise create one).
    conn = sqlite3.connect(
        f"file:{quote(database)}?mode=rw", isolation_level=None, check_same_thread=False, uri=True
    )
    _pragmas(conn, None)
    # No checkpoint inside a COMMIT, where the writer turn is held: shop.storage.checkpoints
    # runs them after the turn is given back.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _begin(conn: Any, queue: WriterQueue) -> None:
    if conn.get_execution_options().get("shop_read"):
        return  # shop.storage.read: one SELECT in autocommit, a WAL reader that needs no turn
    if _own_transaction():
        raise RuntimeError(
            "an ORM Session began a transaction while this thread holds one of "
            "shop.transaction's (it would wait for itself in the writer queue): run the ORM "
            "operation before the first write, or write it as a Core statement"
        )
    # Take the write lock at BEGIN (IMMEDIATE) so a read never has to upgrade to a write
    # (which fails at once with "database is locked" when another writer went first).
    queue.acquire()
    try:
        # Straight to the driver: SQLAlchemy's exec_driver_sql costs more than the BEGIN.
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        queue.release()
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
    except BaseException:
        queue.release()
        raise
    conn.connection.info[_HELD] = queue


def _release(dbapi_connection: Any, connection_record: Any) -> None:
    """Free the turn when the transaction's connection goes back to the pool (or closes)."""
    queue = connection_record.info.pop(_HELD, None) if connection_record is not None else None
    if queue is not None:
        queue.release()
