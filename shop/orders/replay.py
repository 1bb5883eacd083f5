"""What `flask --app app orders failed|replay` works on: undelivered messages, sent again."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, func, not_, select, update

from shop import clock
from shop.orders.sending import deliver_session
from shop.state import ShopState
from shop.storage import read, rows_of, transaction
from shop.storage.models import OrderDelivery

log = logging.getLogger("shop.delivery")

log = logging.getLogger("shop.delivery")


def undelivered() -> list[Any]:
    """Return every message that has not reached its destination (rows of order_deliveries)."""
    return transaction.execute(
        rows_of(OrderDelivery)
        .where(OrderDelivery.state != "delivered")
        .order_by(OrderDelivery.created_at, OrderDelivery.id)
    ).all()


def backlog() -> list[tuple[str, str, int, int]]:
    """(destination, state, how many, oldest created_at) of the messages not delivered yet."""
    return [
        (destination, state, count, oldest)
        for destination, state, count, oldest in read(
            select(
                OrderDelivery.destination,
                OrderDelivery.state,
                func.count(),
                func.min(OrderDelivery.created_at),
            )
            .where(OrderDelivery.state != "delivered")
            .group_by(OrderDelivery.destination, OrderDelivery.state)
        )
    ]


def replay(state: ShopState, session_id: str) -> list[Any]:
    """Send a session's merchant order (and agent events) again now; same order id."""
    now = clock.epoch()
    # One conditional statement: a message another worker is sending right now (an unexpired
    # lease) is left to it, so a replay never races a send into a second delivery.
    transaction.execute(
        update(OrderDelivery)
        .where(
            OrderDelivery.session_id == session_id,
            not_(and_(OrderDelivery.state == "delivering", OrderDelivery.next_at > now)),
        )
        .values(state="pending", next_at=0)
    )
    transaction.commit()
    deliver_session(state, session_id)
    return transaction.execute(
        rows_of(OrderDelivery)
        .where(OrderDelivery.session_id == session_id)
        .order_by(OrderDelivery.id)
    ).all()


def dropped_sessions() -> list[str]:
    """Return the sessions with a message dropped for want of a destination, oldest first."""
    return sessions_in("dropped")


def sessions_in(*states: str) -> list[str]:
    """Return the sessions with a message in one of `states`, oldest first (bulk replay)."""
    rows = transaction.execute(
        select(OrderDelivery.session_id, OrderDelivery.created_at)
        .where(OrderDelivery.state.in_(states))
        .order_by(OrderDelivery.created_at)
    ).all()
    transaction.commit()
    return list(dict.fromkeys(session_id for session_id, _ in rows))
