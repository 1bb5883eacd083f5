"""Typed Flask-SQLAlchemy models: checkout sessions, idempotency records, stock levels, events.

Timestamps are whole Unix seconds (portable between SQLite and PostgreSQL, easy to compare).
"""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class CheckoutSession(db.Model):
    __tablename__ = "checkout_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
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
    payment_reference: Mapped[str | None] = mapped_column(String(255), nullable=True,
                                                          index=True)
    provider_order_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    provider_order_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flagged: Mapped[int] = mapped_column(Integer, default=0)
    forter_reference_id: Mapped[str | None] = mapped_column(String(255), nullable=True,
                                                            unique=True)
    # The order payload, frozen at the moment of payment (amounts match what was charged).
    order_payload: Mapped[str | None] = mapped_column(Text, nullable=True)


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
    __table_args__ = (UniqueConstraint("session_id", "destination", "event",
                                       name="uq_delivery_session_destination_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    order_id: Mapped[str] = mapped_column(String(80))
    destination: Mapped[str] = mapped_column(String(16))  # merchant | agent
    event: Mapped[str] = mapped_column(String(32))  # order.created | order.flagged | order_create …
    payload: Mapped[str] = mapped_column(Text)
    # pending -> delivering (leased) -> delivered | failed (retried) | gave_up
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[int] = mapped_column(BigInteger, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


def init_db(app: Flask) -> None:
    """Bind the database to the app and create missing tables."""
    db.init_app(app)
    with app.app_context():
        db.create_all()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:  # type: ignore[no-untyped-def]
    """Tune SQLite: WAL for concurrent readers, a busy timeout for concurrent writers.

    synchronous=NORMAL in WAL mode skips the fsync on each commit (it happens at checkpoints):
    a power cut can lose the last few commits, never corrupt the file. Every money-moving
    step is also recorded at the provider, and a lost session is re-derivable there.
    """
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    # Take the write lock at BEGIN (IMMEDIATE) so two writers queue on the busy timeout
    # instead of failing with "database is locked" when a read upgrades to a write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
