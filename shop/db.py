"""Typed Flask-SQLAlchemy models: checkout sessions, idempotency records, stock levels, events.

Timestamps are whole Unix seconds (portable between SQLite and PostgreSQL, easy to compare).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    Executable,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.sqlite_tuning import WriterQueue, open_connection, tune, writer_queue


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# transaction.info() flag: the open transaction holds a payment already taken (complete's mark_paid
# left it to the idempotency layer to commit with the response); whatever goes wrong after,
# it is committed, never rolled back (shop/idempotency.py).
KEEP_ON_ERROR = "shop.keep_on_error"


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index holding only the rows `where` is true of (SQLite >= 3.8 and PostgreSQL).

    Every index is written on each insert, and on each update of its columns; rows outside
    `where` cost none of those writes (docs/decisions.md, Storage).
    """
    clause = text(where)
    return Index(name, *columns, unique=unique, sqlite_where=clause, postgresql_where=clause)


class CheckoutSession(db.Model):
    __tablename__ = "checkout_sessions"
    # Partial: most sessions never have a payment reference, Forter reference or phone, and
    # many no email, so their NULLs are not indexed. Equality lookups (`col = ?`) imply
    # `col IS NOT NULL`, which SQLite and PostgreSQL both use to pick the partial index.
    # status has no index of its own: the only query filtering on it is
    # release_stuck_payments (status = 'in_progress' and quiet since updated_at), served by
    # ix_checkout_sessions_paying, which holds only paying sessions; purge finds expired
    # sessions by expires_at.
    __table_args__ = (
        _partial("ix_checkout_sessions_paying", "updated_at", where="status = 'in_progress'"),
        _partial(
            "ix_checkout_sessions_payment_reference",
            "payment_reference",
            where="payment_reference IS NOT NULL",
        ),
        _partial(
            "uq_checkout_sessions_forter_reference_id",
            "forter_reference_id",
            where="forter_reference_id IS NOT NULL",
            unique=True,
        ),
        _partial(
            "ix_checkout_sessions_buyer_email", "buyer_email", where="buyer_email IS NOT NULL"
        ),
        _partial(
            "ix_checkout_sessions_buyer_phone", "buyer_phone", where="buyer_phone IS NOT NULL"
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    # The buyer's cart and details as JSON (line items, buyer, address, option, coupons).
    cart: Mapped[str] = mapped_column(Text)
    # Sticky messages from the last payment attempt (payment_declined, out_of_stock ...).
    notices: Mapped[str] = mapped_column(Text, default="[]")
    stock_reserved: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    amount_paid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payment_provider: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Indexed: a Stripe dispute names only the PaymentIntent, and finds its session by it.
    payment_reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    provider_order_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    provider_order_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flagged: Mapped[int] = mapped_column(Integer, default=0)
    # Unique when set: uq_checkout_sessions_forter_reference_id (shop/forter.py claims it).
    forter_reference_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The order payload, frozen at the moment of payment (amounts match what was charged).
    order_payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The buyer's email (lower-case) and phone (digits), kept in step with `cart` by
    # shop/buyers.py: Forter's /api/account finds a returning buyer through these indexes.
    buyer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    buyer_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)


class IdempotencyRecord(db.Model):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(300))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | done
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)


class StockLevel(db.Model):
    __tablename__ = "stock_levels"

    item_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    qty: Mapped[int] = mapped_column(BigInteger)
    # The inventory number last read from products.json: a different number there is a restock.
    file_inventory: Mapped[int] = mapped_column(BigInteger)


class ProviderEvent(db.Model):
    """A provider webhook event already acted on (its id is unique: duplicates do nothing)."""

    __tablename__ = "provider_events"

    id: Mapped[str] = mapped_column(String(300), primary_key=True)  # "<provider>:<event id>"
    type: Mapped[str] = mapped_column(String(100))
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    received_at: Mapped[int] = mapped_column(BigInteger, index=True)


class OrderDelivery(db.Model):
    """One message about a session's order to one destination, delivered exactly once.

    (session_id, destination, event) is unique, so however many paths confirm a payment, one
    row exists; a worker takes it with a conditional UPDATE (a lease) before sending.
    """

    __tablename__ = "order_deliveries"
    # The unique key's leading column serves every lookup by session_id; one (state, next_at)
    # index serves the sweeper (state IN open AND next_at <= now), `orders failed` and purge.
    __table_args__ = (
        UniqueConstraint(
            "session_id", "destination", "event", name="uq_delivery_session_destination_event"
        ),
        Index("ix_order_deliveries_state_next_at", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(80))
    destination: Mapped[str] = mapped_column(String(16))  # merchant | agent
    event: Mapped[str] = mapped_column(String(32))  # order.created | order.flagged | order_create …
    payload: Mapped[str] = mapped_column(Text)
    # pending -> delivering (leased) -> delivered | failed (retried) | gave_up
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


def init_db(app: Flask) -> None:
    """Bind the database to the app, create missing tables and add missing columns."""
    url = str(app.config.get("SQLALCHEMY_DATABASE_URI", ""))
    if url.startswith("sqlite:///") and ":memory:" not in url:
        # A transaction may read() on a second connection while it holds the writer queue,
        # and other threads wait in the queue holding theirs: with a capped pool that reader
        # could wait for a connection that only frees after it. SQLite connections are cheap.
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("max_overflow", -1)
    db.init_app(app)
    with app.app_context():
        tune(db.engine)
        app.extensions[_DATABASE] = Database(db.engine)
        db.create_all()
        _add_missing_columns()


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
        """This thread's autocommit connection for shop.db.read."""
        conn = getattr(self._local, "reader", None)
        if conn is None:
            conn = self._local.reader = open_connection(self._path)
        return conn

    def writer(self) -> sqlite3.Connection:
        """This thread's connection for shop.transaction (it sends BEGIN IMMEDIATE itself)."""
        conn = getattr(self._local, "writer", None)
        if conn is None:
            conn = self._local.writer = open_connection(self._path)
        return conn


def database() -> Database:
    """The current app's Database (made by init_db, or here for an app bound without it)."""
    extensions = current_app.extensions
    found = extensions.get(_DATABASE)
    if found is None:
        found = extensions[_DATABASE] = Database(db.engine)
    return found


def rows_of(model: type[Base]) -> Any:
    """SELECT every column of a model's table: rows with the columns as attributes.

    Used instead of an ORM entity SELECT, which needs the Session (shop/transaction.py).
    """
    return select(*model.__table__.c)


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
    compiled = _compiled(statement, bound.dialect) if bound.own else None
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


def one_of(column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)` for a fixed list, as ORs of equalities, so `read`/`write` compile it
    once (SQLAlchemy renders even a literal IN list per execution)."""
    return or_(*(column == value for value in values))


def write_on(conn: Connection, statement: Executable, params: Mapping[str, Any] | None) -> int:
    """Run one INSERT/UPDATE/DELETE on a SQLAlchemy connection in its transaction; rowcount.

    shop.transaction.write uses it inside a Session's transaction: the statement's SQL is
    compiled once and sent on the DBAPI connection, without the ORM's per-statement work.
    """
    dialect = conn.dialect
    compiled = _compiled(statement, dialect) if dialect.name == "sqlite" else None
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


@dataclass(frozen=True, slots=True)
class _Plan:
    """construct_params's answer read straight from the caller's dict (checked once, at compile).

    Its rules, for the binds of one name (one key): the value passed under the key, else under
    the name, else the last one's own value (a literal) unless one of them is required.
    """

    fetch: Callable[[dict[str, Any]], Any]  # itemgetter of the positions' names
    defaults: dict[str, Any]  # by name: the values of binds that need none passed
    renamed: frozenset[str]  # keys of binds named otherwise (literals): passed, they fall back
    one: bool  # one position: fetch returns the value itself

    def read(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The args for `params`; None when construct_params must answer (or raise)."""
        if type(params) is not dict or not self.renamed.isdisjoint(params):
            return None
        try:
            values = self.fetch({**self.defaults, **params} if self.defaults else params)
        except KeyError:
            return None  # a required value is missing: construct_params raises SQLAlchemy's error
        return (values,) if self.one else values


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL for one dialect, and how to turn named parameters into its args."""

    sql: str
    compiled: Any
    positions: tuple[str, ...]
    names: list[Any]  # [the namedtuple class], built from the first cursor description
    plan: _Plan | None = None

    def args(self, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
        if self.plan is not None:
            args = self.plan.read({} if params is None else params)
            if args is not None:
                return args
        values = self.compiled.construct_params(params or {})
        return tuple(values[name] for name in self.positions)

    def row(self, description: Sequence[Any], values: tuple[Any, ...]) -> Any:
        if not self.names:
            fields = [column[0] for column in description]
            self.names.append(namedtuple("Row", fields, rename=True))  # type: ignore[misc]
        return self.names[0]._make(values)


_COMPILED: dict[tuple[int, int], tuple[Executable, Dialect, _Compiled | None]] = {}
_MAX_COMPILED = 512
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


def _compiled(statement: Executable, dialect: Dialect) -> _Compiled | None:
    """Compile once per (statement, dialect); None when the plain path must run it.

    Only qmark statements whose parameters and columns need no type conversion qualify
    (strings, integers, text: every hot statement here); expanding IN lists do not.
    """
    key = (id(statement), id(dialect))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is statement and hit[1] is dialect:
        return hit[2]
    compiled: Any = statement.compile(dialect=dialect)
    plain = (
        dialect.paramstyle == "qmark"
        and compiled.positiontup is not None
        and not any(
            b.expanding or b.type._cached_bind_processor(dialect) for b in compiled.binds.values()
        )
        and not any(
            c.type._cached_result_processor(dialect, None)
            for c in getattr(compiled, "_result_columns", ())
        )
    )
    entry = (
        _Compiled(compiled.string, compiled, tuple(compiled.positiontup), [], _plan(compiled))
        if plain
        else None
    )
    if len(_COMPILED) >= _MAX_COMPILED:  # statements built per call: keep the cache bounded
        _COMPILED.clear()
    _COMPILED[key] = (statement, dialect, entry)
    return entry


def _plan(compiled: Any) -> _Plan | None:
    """How to read a statement's args without construct_params (~1-2 µs a statement), or None.

    Only for unescaped names, each with one key, all sent, and no callables; the plan must
    then give construct_params's own answer for two probes (every value passed; only the
    required ones) or it is not used.
    """
    binds: dict[Any, str] = compiled.bind_names
    positions = tuple(compiled.positiontup)
    keys: dict[str, str] = {}
    if (
        compiled.escaped_bind_names
        or any(keys.setdefault(name, bind.key) != bind.key for bind, name in binds.items())
        or set(keys) != set(positions)
        or any(bind.callable for bind in binds)
    ):
        return None
    required = {name for bind, name in binds.items() if bind.required}
    plan = _Plan(
        fetch=itemgetter(*positions) if positions else _no_args,
        defaults={name: bind.value for bind, name in binds.items() if name not in required},
        renamed=frozenset(key for name, key in keys.items() if key != name),
        one=len(positions) == 1,
    )
    every = {name: object() for name in keys}
    for probe in (every, {name: every[name] for name in required}):
        try:
            expected = compiled.construct_params(probe)
        except Exception:
            return None
        got = plan.read(probe)
        if (
            got is None
            or len(got) != len(positions)
            or any(value is not expected[name] for value, name in zip(got, positions, strict=True))
        ):
            return None
    return plan


def _no_args(_params: dict[str, Any]) -> tuple[()]:
    return ()


def _add_missing_columns() -> None:
    """Add the nullable columns a newer version declares to tables an older one created.

    Portable: `ALTER TABLE … ADD COLUMN` with the dialect's own type names, then the
    columns' indexes with CREATE INDEX (checkfirst). A worker that loses the race to another
    worker doing the same finds the columns there and carries on.
    """
    from sqlalchemy import inspect

    inspector = inspect(db.engine)
    for table in db.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        if not missing:
            continue
        preparer = db.engine.dialect.identifier_preparer
        for column in missing:
            assert column.nullable and column.server_default is None, column
            ddl = (
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                f"{preparer.format_column(column)} "
                f"{column.type.compile(dialect=db.engine.dialect)}"
            )
            try:
                with db.engine.begin() as conn:
                    conn.exec_driver_sql(ddl)
            except Exception:
                fresh = {c["name"] for c in inspect(db.engine).get_columns(table.name)}
                if column.name not in fresh:
                    raise
        for index in table.indexes:
            try:
                index.create(db.engine, checkfirst=True)
            except Exception:
                if index.name not in {
                    i["name"] for i in inspect(db.engine).get_indexes(table.name)
                }:
                    raise
