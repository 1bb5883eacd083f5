"""The checkout_sessions rows on the request path, as prebuilt SQLAlchemy Core statements.

Reads run outside the request's transaction (shop.storage.connections.read); writes are one
statement each in the caller's transaction, and an update is conditional on the status and
cart it was computed from, so its row count says whether the session changed meanwhile (no
read-then-write). Core instead of the ORM: one checkout request used to spend most of its
CPU in the ORM's unit of work; these statements are compiled once and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from shop import fast_json
from shop.checkout.buyers import normal_email, normal_phone
from shop.storage import read, rows_of, transaction
from shop.storage.models import CheckoutSession
from shop.storage.transaction import write

_T = CheckoutSession.__table__
_FIND = select(
    _T.c.id,
    _T.c.status,
    _T.c.currency,
    _T.c.created_at,
    _T.c.updated_at,
    _T.c.expires_at,
    _T.c.cart,
    _T.c.notices,
    _T.c.order_id,
    _T.c.payment_reference,
    _T.c.provider_order_id,
    _T.c.provider_order_amount,
    _T.c.payment_provider,
    _T.c.order_payload,
).where(_T.c.id == bindparam("s_id"))
_INSERTED = (
    "id",
    "status",
    "currency",
    "created_at",
    "updated_at",
    "expires_at",
    "cart",
    "notices",
    "stock_reserved",
    "flagged",
    "provider_order_id",
    "provider_order_amount",
    "buyer_email",
    "buyer_phone",
)
_INSERT = insert(_T).values({name: bindparam(name) for name in _INSERTED})
_UPDATE_KEEPING_BUYER = (
    update(_T)
    .where(
        _T.c.id == bindparam("s_id"),
        _T.c.status == bindparam("s_seen_status"),
        _T.c.cart == bindparam("s_seen_cart"),
    )
    .values(
        status=bindparam("s_status"),
        cart=bindparam("s_cart"),
        notices=bindparam("s_notices"),
        updated_at=bindparam("s_now"),
        provider_order_id=bindparam("s_order"),
        provider_order_amount=bindparam("s_amount"),
    )
)
# SQLite rewrites an index entry whenever its column is SET, same value or not: the buyer
# columns are only SET when the buyer changed (one page fewer in each other update's commit).
_UPDATE = _UPDATE_KEEPING_BUYER.values(
    buyer_email=bindparam("s_email"), buyer_phone=bindparam("s_phone")
)
_EXPIRE = (
    update(_T)
    .where(
        _T.c.id == bindparam("s_id"),
        _T.c.status.in_(bindparam("s_open", expanding=True)),
        _T.c.expires_at <= bindparam("s_now"),
    )
    .values(status=bindparam("s_expired"), updated_at=bindparam("s_now"))
)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The columns of a session that rendering and the open-session steps read."""

    id: str
    status: str
    currency: str
    created_at: int
    updated_at: int
    expires_at: int
    cart: str
    notices: str
    order_id: str | None = None
    payment_reference: str | None = None
    provider_order_id: str | None = None
    provider_order_amount: int | None = None
    payment_provider: str | None = None
    order_payload: str | None = None


def find(session_id: str) -> SessionRecord | None:
    """Return the committed state of a session, or None."""
    rows = read(_FIND, {"s_id": session_id})
    return SessionRecord(*rows[0]) if rows else None


_LOAD = rows_of(CheckoutSession).where(_T.c.id == bindparam("s_id"))


def load(session_id: str) -> Any:
    """Read a session in the current transaction (beginning it): every column, or None."""
    return transaction.execute(_LOAD, {"s_id": session_id}).first()


def buyer_columns(details: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The indexed buyer columns shop/buyers.py keeps in step with the cart."""
    buyer = details.get("buyer")
    if not isinstance(buyer, Mapping):
        return None, None
    return normal_email(buyer.get("email")), normal_phone(buyer.get("phone_number"))


def insert_row(record: SessionRecord, details: Mapping[str, Any]) -> None:
    """Insert a new session in the current transaction."""
    email, phone = buyer_columns(details)
    write(
        _INSERT,
        {
            "id": record.id,
            "status": record.status,
            "currency": record.currency,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "expires_at": record.expires_at,
            "cart": record.cart,
            "notices": record.notices,
            "stock_reserved": 0,
            "flagged": 0,
            "provider_order_id": record.provider_order_id,
            "provider_order_amount": record.provider_order_amount,
            "buyer_email": email,
            "buyer_phone": phone,
        },
    )


def update_open(
    seen: SessionRecord,
    new: SessionRecord,
    details: Mapping[str, Any],
    seen_buyer: tuple[str | None, str | None] | None = None,
) -> bool:
    """Write `new` if the session is still as `seen` read it; True when it was written.

    `seen_buyer`: buyer_columns of `seen.cart`, when the caller has them (else they are read
    from it if the cart changed): the indexed buyer columns are left alone when they are the
    same.
    """
    email, phone = buyer_columns(details)
    if seen_buyer is None and new.cart != seen.cart:
        seen_buyer = buyer_columns(fast_json.loads(seen.cart))
    unchanged = new.cart == seen.cart or (email, phone) == seen_buyer
    statement = _UPDATE_KEEPING_BUYER if unchanged else _UPDATE
    return (
        write(
            statement,
            {
                "s_id": seen.id,
                "s_seen_status": seen.status,
                "s_seen_cart": seen.cart,
                "s_status": new.status,
                "s_cart": new.cart,
                "s_notices": new.notices,
                "s_now": new.updated_at,
                "s_order": new.provider_order_id,
                "s_amount": new.provider_order_amount,
                "s_email": email,
                "s_phone": phone,
            },
        )
        == 1
    )


def expire(session_id: str, open_statuses: tuple[str, ...], expired: str, now: int) -> bool:
    """Mark an open session past its TTL expired, in the current transaction."""
    return (
        write(
            _EXPIRE,
            {
                "s_id": session_id,
                "s_open": list(open_statuses),
                "s_expired": expired,
                "s_now": now,
            },
        )
        == 1
    )
