"""SQLite tuning: the pragmas, BEGIN IMMEDIATE, and one queue for writers per worker process.

Applied by `shop.db.init_db` to SQLite engines only; PostgreSQL engines are left alone.
docs/decisions.md (Storage) gives the durability trade-off of these pragmas.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

BUSY_TIMEOUT_SECONDS = 10.0


class WriterQueue:
    """Let one thread of this process at a time hold an SQLite transaction.

    Every transaction here is a writer (BEGIN IMMEDIATE). When two collide, SQLite's busy
    handler sleeps 1, 2, 5, 10 … ms before it looks again, so under load those sleeps, not
    the work, would set the latency. Threads of one worker queue on a lock instead and are
    woken the moment the holder's connection goes back to the pool; only the few collisions
    between worker processes still wait on SQLite's busy handler.
    """

    def __init__(self, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout

    def acquire(self) -> None:
        """Wait for the turn to write; raise sqlite3.OperationalError after the timeout."""
        if not self._lock.acquire(timeout=self._timeout):
            raise sqlite3.OperationalError(
                f"database is locked: another transaction of this process held it for "
                f"{self._timeout:g} s")

    def release(self) -> None:
        """Give the turn to the next waiting thread."""
        self._lock.release()


def tune(engine: Engine) -> None:
    """Set the pragmas and the writer queue on a fresh SQLite engine (before it connects)."""
    if engine.dialect.name != "sqlite":
        return
    queue = WriterQueue()
    event.listen(engine, "connect", _pragmas)
    event.listen(engine, "begin", lambda conn: _begin(conn, queue))
    event.listen(engine.pool, "checkin", _release)
    event.listen(engine.pool, "close", lambda dbapi_conn, record: _release(dbapi_conn, record))


def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL for readers beside the writer, synchronous=NORMAL, and a busy timeout.

    synchronous=NORMAL in WAL mode skips the fsync on each commit (it happens at checkpoints):
    a power cut can lose the last commits, never corrupt the file (docs/decisions.md).
    """
    # Autocommit at the driver level, so the BEGIN IMMEDIATE below is the only BEGIN sent.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin(conn: Any, queue: WriterQueue) -> None:
    if conn.get_execution_options().get("shop_read"):
        return  # shop.db.read: one SELECT in autocommit, a WAL reader that needs no turn
    # Take the write lock at BEGIN (IMMEDIATE) so two writers queue on the busy timeout
    # instead of failing with "database is locked" when a read upgrades to a write.
    queue.acquire()
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        queue.release()
        raise
    conn.connection.info["shop.writer_queue"] = queue


def _release(dbapi_connection: Any, connection_record: Any) -> None:
    """Free the turn when the transaction's connection goes back to the pool (or closes)."""
    queue = connection_record.info.pop("shop.writer_queue", None) if connection_record else None
    if queue is not None:
        queue.release()
