"""Each app's database as the fast paths need it, and reads outside any transaction.

`Database` (one per app, made by models.init_db) holds the engine, its dialect, whether it
is an SQLite file (`own`: reads and transactions then run on each thread's own sqlite3
connections) and the writer queue. `read` runs one SELECT on the thread's reader connection;
`write_on` runs a write on a SQLAlchemy connection already in a transaction (the Session
path of shop.storage.transaction).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from flask.globals import _cv_app
from sqlalchemy import Executable
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from shop.errors import DatabaseUnavailableError
from shop.storage.compiled_sql import compile_once
from shop.storage.failures import file_removed, file_replaced
from shop.storage.sqlite_tuning import WriterQueue, open_connection, writer_queue

log = logging.getLogger("shop.storage")


class Database:
    """One app's engine as the fast paths need it, worked out once (by init_db), not per call.

    `own` is true on an SQLite file: reads and transactions then run on each thread's own
    sqlite3 connections, opened on first use; anything else (PostgreSQL, in-memory SQLite)
    goes through SQLAlchemy. A forked child (a gunicorn worker) opens its own connections:
    SQLite's must not be used across a fork.
    """

    __slots__ = (
        "__weakref__",
        "_local",
        "_path",
        "dialect",
        "engine",
        "failures",
        "identity",
        "own",
        "probed_at",
        "queue",
        "space_ok_at",
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.own = _fast(engine)
        self.queue: WriterQueue | None = writer_queue(engine) if self.own else None
        self._path = str(engine.url.database)
        self._local = threading.local()
        # shop.storage.health: the file's (device, inode) as opened, and failures met since
        self.identity: tuple[int, int] | None = None
        self.failures: dict[str, tuple[str, float]] = {}
        self.probed_at = float("-inf")
        self.space_ok_at = float("-inf")  # when the disk last had room (monotonic)
        _DATABASES.add(self)

    @property
    def path(self) -> str:
        """The SQLite file's path (meaningful when `own`)."""
        return self._path

    def reader(self) -> sqlite3.Connection:
        """This thread's autocommit connection for shop.storage.connections.read."""
        conn = getattr(self._local, "reader", None)
        if conn is None:
            conn = self._local.reader = open_connection(self._path)
        return conn

    def writer(self) -> sqlite3.Connection:
        """This thread's connection for storage.transaction (it sends BEGIN IMMEDIATE itself)."""
        conn = getattr(self._local, "writer", None)
        if conn is None:
            conn = self._local.writer = open_connection(self._path)
        return conn

    def check_file(self) -> None:
        """Raise DatabaseUnavailableError when the file was removed or replaced since opened.

        One stat() per call (about a microsecond): every transaction and every read checks, so
        nothing is answered from, or written to, a file that is no longer the store's. The
        first time, what the store still sees of the lost file through its open connections is
        copied beside it (`<path>.rescued-<inode>`), so no paid order's record is gone.
        """
        if self.identity is None:
            return
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            found = None
        if found is not None and (found.st_dev, found.st_ino) == self.identity:
            return
        rescued = self._rescue()
        text = (file_removed if found is None else file_replaced)(self._path, rescued)
        self.note("file", text)
        raise DatabaseUnavailableError(text)

    def note(self, kind: str, text: str) -> None:
        """Remember a failure of `kind` (shop.storage.health); log it the first time."""
        if kind not in self.failures:
            log.error("DATABASE UNAVAILABLE: %s", text)
        self.failures[kind] = (text, time.monotonic())

    def _rescue(self) -> str | None:
        """Copy the lost file, as this thread's open connection still sees it, beside the path."""
        assert self.identity is not None
        target = f"{self._path}.rescued-{self.identity[1]}"
        if os.path.exists(target):
            return target
        conn = getattr(self._local, "reader", None) or getattr(self._local, "writer", None)
        if conn is None or conn.in_transaction:
            return None  # this thread never opened the old file; another thread will
        partial = f"{target}.{os.getpid()}.part"
        try:
            copy = sqlite3.connect(partial)
            try:
                conn.backup(copy)
                # The copy carries the WAL flag of the original: fold its WAL into the file
                # before the rename, so nothing is left behind under the temporary name.
                copy.execute("PRAGMA journal_mode=DELETE")
            finally:
                copy.close()
            os.replace(partial, target)
        except (OSError, sqlite3.Error):
            log.exception("could not copy the lost database file to %s", target)
            with contextlib.suppress(OSError):
                os.unlink(partial)
            return None
        log.error("the database file's last contents were copied to %s", target)
        return target


def attach(app: Any, engine: Engine) -> Database:
    """Make the app's Database for its engine (models.init_db, once the engine is tuned)."""
    bound = app.extensions[_DATABASE] = Database(engine)
    return bound


def database() -> Database:
    """The current app's Database (made by init_db, or here for an app bound without it)."""
    context = _cv_app.get(None)  # not the current_app proxy: ~0.1 against ~0.7 us, 5x a request
    if context is None:
        raise RuntimeError("Working outside of application context (shop.storage.database).")
    extensions = context.app.extensions
    found = extensions.get(_DATABASE)
    if found is None:
        found = extensions[_DATABASE] = Database(extensions["sqlalchemy"].engine)
    return found


def remember_file(app: Any) -> None:
    """Note which file the app's database is (its inode), once its tables exist (init_db)."""
    bound = app.extensions.get(_DATABASE)
    if bound is not None and bound.own:
        found = os.stat(bound.path)
        bound.identity = (found.st_dev, found.st_ino)


def read(statement: Executable, params: Mapping[str, Any] | None = None) -> list[Any]:
    """Run one SELECT on its own connection, outside the request's transaction; return rows.

    On SQLite it sends no BEGIN IMMEDIATE and waits for no writer (WAL readers never block),
    so a request computes on what it read and holds the write lock only for its writes. Use
    it for reads that only inform (availability shown to the buyer) or that the later write
    re-checks in its WHERE clause; it cannot see the request's uncommitted changes.

    Rows are tuples with attribute access by column name. On an SQLite file each thread
    keeps one autocommit reader connection and runs the statement's SQL, compiled once, on
    it directly (a pooled SQLAlchemy connection cost ~0.3 ms per read); other databases, and
    statements the fast path cannot take, go through SQLAlchemy.
    """
    bound = database()
    if not bound.own:
        with bound.engine.connect().execution_options(shop_read=True) as conn:
            return list(conn.execute(statement, params or {}))
    # Before either path: the engine's connect below would make a new, empty file where a
    # removed one was (SQLAlchemy opens SQLite files in create mode).
    bound.check_file()
    compiled = compile_once(statement, bound.dialect)
    if compiled is None:
        with bound.engine.connect().execution_options(shop_read=True) as conn:
            return list(conn.execute(statement, params or {}))
    sql, args = compiled.sql, compiled.args(params)
    try:
        cursor = bound.reader().execute(sql, args)
        rows = cursor.fetchall()
        cursor.close()
    except bound.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, args, exc, bound.dialect.loaded_dbapi.Error) from exc
    return [compiled.row(cursor.description, r) for r in rows]


def write_on(conn: Connection, statement: Executable, params: Mapping[str, Any] | None) -> int:
    """Run one INSERT/UPDATE/DELETE on a SQLAlchemy connection in its transaction; rowcount.

    shop.storage.transaction.write uses it inside a Session's transaction: the statement's SQL is
    compiled once and sent on the DBAPI connection, without the ORM's per-statement work.
    """
    dialect = conn.dialect
    compiled = compile_once(statement, dialect) if dialect.name == "sqlite" else None
    if compiled is None:
        return conn.execute(statement, params or {}).rowcount
    sql, args = compiled.sql, compiled.args(params)
    try:
        cursor = conn.connection.dbapi_connection.execute(sql, args)  # type: ignore[union-attr]
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error) from exc
    count = cursor.rowcount
    cursor.close()
    return count


_DATABASE = "shop.database"  # app.extensions key


_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _forget_connections() -> None:
    for bound in list(_DATABASES):
        bound._local = threading.local()  # the parent's connections stay the parent's


# A forked child opens its own connections; checking the pid on every statement cost more.
os.register_at_fork(after_in_child=_forget_connections)


def _fast(engine: Engine) -> bool:
    database = engine.url.database
    return (
        engine.dialect.name == "sqlite"
        and bool(database)
        and database != ":memory:"
        and not str(database).startswith("file:")
    )
