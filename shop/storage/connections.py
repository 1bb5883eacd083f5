"""Each app's database as the fast paths need it, and reads outside any transaction.

`Database` (one per app, made by models.init_db) holds the engine, its dialect, whether it
is an SQLite file (`own`: reads and transactions then run on each thread's own sqlite3
connections) and the writer queue. `read` runs one SELECT on the thread's reader connection;
`write_on` runs a write on a SQLAlchemy connection already in a transaction (the Session
path of shop.storage.transaction).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import Executable
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from shop.storage.compiled_sql import compile_once
from shop.storage.sqlite_tuning import WriterQueue, open_connection, writer_queue


class Database:
    """One app's engine as the fast paths need it, worked out once (by init_db), not per call.

    `own` is true on an SQLite file: reads and transactions then run on each thread's own
    sqlite3 connections, opened on first use; anything else (PostgreSQL, in-memory SQLite)
    goes through SQLAlchemy. A forked child (a gunicorn worker) opens its own connections:
    SQLite's must not be used across a fork.
    """

    __slots__ = ("__weakref__", "_local", "_path", "dialect", "engine", "own", "queue")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.own = _fast(engine)
        self.queue: WriterQueue | None = writer_queue(engine) if self.own else None
        self._path = str(engine.url.database)
        self._local = threading.local()
        _DATABASES.add(self)

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


def attach(app: Any, engine: Engine) -> Database:
    """Make the app's Database for its engine (models.init_db, once the engine is tuned)."""
    bound = app.extensions[_DATABASE] = Database(engine)
    return bound


def database() -> Database:
    """The current app's Database (made by init_db, or here for an app bound without it)."""
    extensions = current_app.extensions
    found = extensions.get(_DATABASE)
    if found is None:
        found = extensions[_DATABASE] = Database(extensions["sqlalchemy"].engine)
    return found


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
    compiled = compile_once(statement, bound.dialect) if bound.own else None
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
