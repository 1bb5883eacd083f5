"""Returning buyers: the indexed contact columns of checkout sessions and the lookup behind them.

Whenever a CheckoutSession's `cart` JSON is written (an ORM flush, or an ORM-enabled
`update(CheckoutSession).values(cart=…)` like the complete claim), its buyer's email
(lower-case) and phone (digits only) are copied into `buyer_email` / `buyer_phone`, indexed,
so finding "has this buyer checked out here within the retention window" is one indexed
SELECT, never a scan of every session's JSON. The columns go when `purge` deletes the
session, so a buyer is only remembered as long as the store keeps their session.

A returning buyer's account id is pseudonymous and stable: an HMAC of their email (or,
without one, their phone) keyed with a store secret, so it reveals no contact detail and the
same buyer gets the same id from every session.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from shop import fast_json
from shop.security import hmac_sha256_hex
from shop.storage import transaction
from shop.storage.models import CheckoutSession


def normal_email(value: Any) -> str | None:
    """Return an email lower-cased and trimmed, or None when it does not look like one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email and len(email) <= 320 else None


def normal_phone(value: Any) -> str | None:
    """Return a phone number's digits ("+1 (415) 555-0100" -> "14155550100"), or None."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    return digits if 4 <= len(digits) <= 32 else None


def _contacts(cart: str | None) -> tuple[str | None, str | None]:
    try:
        buyer = (fast_json.loads(cart or "{}") or {}).get("buyer") or {}
    except (ValueError, AttributeError):
        return None, None
    if not isinstance(buyer, dict):
        return None, None
    return normal_email(buyer.get("email")), normal_phone(buyer.get("phone_number"))


_MAPPER = inspect(CheckoutSession)


@event.listens_for(CheckoutSession, "before_insert")
def _index_new_buyer(_mapper: Any, _connection: Any, target: CheckoutSession) -> None:
    target.buyer_email, target.buyer_phone = _contacts(target.cart)


@event.listens_for(CheckoutSession, "before_update")
def _index_changed_buyer(_mapper: Any, _connection: Any, target: CheckoutSession) -> None:
    if inspect(target).attrs.cart.history.has_changes():  # never loads an expired cart
        target.buyer_email, target.buyer_phone = _contacts(target.cart)


def find_returning(email: str | None, phone: str | None) -> tuple[str | None, str | None] | None:
    """Return (email, phone) of a held session's buyer matching either contact, else None.

    A match by email wins over one by phone (an email names one person more surely).
    """
    for column, value in (
        (CheckoutSession.buyer_email, normal_email(email)),
        (CheckoutSession.buyer_phone, normal_phone(phone)),
    ):
        if value is None:
            continue
        row = transaction.execute(
            select(CheckoutSession.buyer_email, CheckoutSession.buyer_phone)
            .where(column == value)
            .limit(1)
        ).first()
        if row is not None:
            return row.buyer_email, row.buyer_phone
    return None


def account_id(key: str, email: str | None, phone: str | None) -> str:
    """Return the pseudonymous account id of a buyer: keyed HMAC of the email, else the phone."""
    contact = f"email:{email}" if email else f"phone:{phone}"
    return "acct_" + hmac_sha256_hex(key, f"shop-account-id\n{contact}")[:24]


@event.listens_for(Session, "do_orm_execute")
def _index_buyer_in_updates(orm_execute_state: Any) -> None:
    """Do the same for `update(CheckoutSession).values(cart=…)`, which skips mapper events."""
    if not orm_execute_state.is_update or orm_execute_state.bind_mapper is not _MAPPER:
        return
    statement = orm_execute_state.statement
    cart = _set_value(statement, "cart")
    if cart is not None:
        email, phone = _contacts(cart)
        orm_execute_state.statement = statement.values(buyer_email=email, buyer_phone=phone)


def _set_value(statement: Any, column: str) -> Any:
    """Return the value an UPDATE's SET clause gives a column, or None."""
    values = getattr(statement, "_values", None)
    if values is None:  # not SQLAlchemy 2's layout: compile (public, but ~0.2 ms a statement)
        return statement.compile().params.get(column)
    for key, value in values.items():
        if getattr(key, "key", key) == column:
            return getattr(value, "value", None)
    return None
