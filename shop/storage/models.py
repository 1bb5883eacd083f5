"""Typed Flask-SQLAlchemy models: checkout sessions, idempotency records, stock levels, events.

Timestamps are whole Unix seconds (portable between SQLite and PostgreSQL, easy to compare).
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.storage.connections import attach, remember_file
from shop.storage.sqlite_tuning import tune


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# transaction.info() flag: the open transaction holds a payment already taken (complete's mark_paid
# left it to the idempotency layer to commit with the response); whatever goes wrong after,
# it is committed, never rolled back (shop/idempotency.py).
KEEP_ON_ERROR = "shop.keep_on_error"
# transaction.info() flag: this unit of work took a payment (shop.checkout.paying). Whatever
# fails after, its answer says so: the ACP surface answers it even when it cannot store it.
PAYMENT_TAKEN = "shop.payment_taken"


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
    # No index on created_at: every index is one more page written by each request's commit,
    # and the purge finds the oldest records by id (they are inserted in id order, one
    # transaction at a time; shop.storage.expiry). RETIRED_INDEXES drops it from older files.
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(300))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | done
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


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


class HourlyCount(db.Model):
    """Business counts per UTC hour (sessions created, completed, payment failures by reason):
    what the /status page shows for today and charts. Names and numbers only, no buyer data."""

    __tablename__ = "hourly_counts"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch of the hour's start
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


def init_db(app: Flask, existing: bool = False) -> None:
    """Bind the database to the app, create missing tables and add missing columns.

    `existing`: the store is already serving (another gunicorn worker loaded it), so its
    SQLite file must be there. A worker started after `rm shop.sqlite3` would otherwise make a
    new, empty file in its place (SQLAlchemy opens SQLite files in create mode), and the store
    would go on without its sessions and undelivered orders; it refuses to start instead.
    """
    url = str(app.config.get("SQLALCHEMY_DATABASE_URI", ""))
    path = make_url(url).database if url.startswith("sqlite:///") else None
    if existing and path and ":memory:" not in path and not os.path.exists(path):
        raise FileNotFoundError(
            f"the file {path} was removed while the store was running; restore it (or its "
            f"copy {path}.rescued-*) and restart, instead of starting on a new, empty one"
        )
    if url.startswith("sqlite:///") and ":memory:" not in url:
        # A transaction may read() on a second connection while it holds the writer queue,
        # and other threads wait in the queue holding theirs: with a capped pool that reader
        # could wait for a connection that only frees after it. SQLite connections are cheap.
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("max_overflow", -1)
    db.init_app(app)
    with app.app_context():
        tune(db.engine)
        attach(app, db.engine)
        _create_tables()
        remember_file(app)


# Any number, the same in every process: PostgreSQL's advisory lock for creating the tables.
_SCHEMA_LOCK = 7_316_016


def _create_tables() -> None:
    """Create missing tables and columns; on PostgreSQL one process at a time.

    Several workers (or two servers) starting together on an empty PostgreSQL database would
    otherwise race to CREATE the same tables and all but one fail. On SQLite the writer queue
    already serializes it (every transaction holds the flock).
    """
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            db.metadata.create_all(conn)
    else:
        db.create_all()
    _add_missing_columns()
    _drop_retired_indexes()


# Indexes an older version made that this one no longer declares, by table: each costs a page
# write on every insert (docs/decisions.md, issue 12), so a file made before is rid of them.
RETIRED_INDEXES = {"idempotency_records": ("ix_idempotency_records_created_at",)}


def _drop_retired_indexes() -> None:
    """Drop the RETIRED_INDEXES a database still has (a worker racing another one is fine)."""
    from sqlalchemy import inspect

    inspector = inspect(db.engine)
    preparer = db.engine.dialect.identifier_preparer
    for table, names in RETIRED_INDEXES.items():
        if not inspector.has_table(table):
            continue
        present = {index["name"] for index in inspector.get_indexes(table)}
        for name in names:
            if name in present:
                with db.engine.begin() as conn:
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {preparer.quote(name)}")


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
