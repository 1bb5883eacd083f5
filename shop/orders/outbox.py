"""The order outbox: messages about an order become rows in the paying transaction.

Unique per (session, destination, event), so however many paths confirm a payment, one row
exists. A row whose sink drops orders (LogSink) is inserted `dropped` and logged at commit.
Any other row is inserted already leased to this process (`delivering`, its first try
counted): when the transaction commits, the hand-off thread sends it as a `Message` with no
further read or lease. If this process dies first, the lease runs out and a sweeper sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from shop import clock, fast_json
from shop.orders.payload import build_acp_order_event
from shop.orders.retry_schedule import lease_seconds
from shop.state import ShopState
from shop.storage import transaction
from shop.storage.transaction import write

log = logging.getLogger("shop.delivery")


OPEN_STATES = ("pending", "failed", "delivering")  # a try is still coming
STRANDED_STATES = ("gave_up", "dropped")  # paid, not delivered, waiting for `orders replay`

MERCHANT = "merchant"
AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Message:
    """One outbox row as its sender holds it (everything the send and its record need)."""

    session_id: str
    order_id: str
    destination: str
    event: str
    payload: str  # the row's JSON text: the bytes that are sent
    attempts: int  # tries so far, counting the one its lease is for
    lease: int  # the row's next_at while its sender holds it (0: not leased)


def agent_event_key(event: Mapping[str, Any]) -> str:
    """Return the outbox key of an ACP event: order_create once, order_update once per status."""
    if event["type"] == "order_update":
        return f"order_update:{event['data']['status']}"
    return str(event["type"])


# One statement, no savepoint: the unique (session, destination, event) decides (portable:
# SQLite >= 3.24 and PostgreSQL both take ON CONFLICT … DO NOTHING).
_ADD = text(
    "INSERT INTO order_deliveries (session_id, order_id, destination, event, payload, state, "
    "attempts, next_at, last_error, created_at) VALUES (:session_id, :order_id, :destination, "
    ":event, :payload, :state, :attempts, :next_at, :error, :now) "
    "ON CONFLICT (session_id, destination, event) DO NOTHING"
)
# transaction.info: (sink, destination, message, its JSON as the row holds it) to log at commit
_DROPPED_LOG = "shop.dropped_orders"
_HANDED_OFF = "shop.handed_off"  # transaction.info: (state, Message) to send once committed


def _dropped_error(session_id: str) -> str:
    return (
        "dropped: no orderWebhookUrl was set; set it, restart, and run "
        f"`flask --app app orders replay {session_id}`"
    )


def _add(
    sink: Any,
    session_id: str,
    order_id: str,
    destination: str,
    event: str,
    payload: Mapping[str, Any],
    encoded: str | None = None,
) -> bool:
    """Insert one message row in the caller's transaction; False when it was already queued.

    `encoded` is `payload` as fast_json.dumps writes it, when the caller already has it. A
    message to a sink that drops orders (LogSink) is stored `dropped` at once (one try,
    nobody to retry to) and the sink logs it when the transaction commits: no hand-off
    thread, lease or second transaction for an order that goes nowhere. Any other message is
    stored leased to this process for its first try, and handed off at commit.
    """
    if destination == AGENT:
        event = agent_event_key(payload)  # a later status is a new message, not a repeat
    drops = bool(getattr(sink, "drops_orders", False))
    now = clock.epoch()
    params = {
        "session_id": session_id,
        "order_id": order_id,
        "destination": destination,
        "event": event,
        "payload": (text_payload := fast_json.dumps(payload) if encoded is None else encoded),
        "state": "dropped" if drops else "delivering",
        "attempts": 1,
        "error": _dropped_error(session_id) if drops else None,
        "now": now,
        "next_at": now if drops else now + lease_seconds(getattr(sink, "timeout", None)),
    }
    if write(_ADD, params) != 1:
        return False  # already queued by another path (exactly once)
    if drops:
        transaction.info().setdefault(_DROPPED_LOG, []).append(
            (sink, destination, payload, text_payload)
        )
    else:
        message = Message(
            session_id, order_id, destination, event, text_payload, 1, params["next_at"]
        )
        transaction.info().setdefault(_HANDED_OFF, []).append(message)
    return True


def _enqueue(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    event: str,
    message: Mapping[str, Any],
    acp_type: str,
    acp_status: str,
    encoded: str | None = None,
    **acp_extra: Any,
) -> bool:
    """Queue `message` for the merchant and, when configured, the ACP event for the agent.

    `encoded` is `message` as JSON when the caller has it. Return False when the merchant's
    message was queued before (the unique row is the claim).
    """
    order_id = payload["order"]["id"]
    if not _add(state.sink, session_id, order_id, MERCHANT, event, message, encoded):
        return False
    if state.agent_sink is not None:
        acp_event = build_acp_order_event(acp_type, payload, acp_status, **acp_extra)
        _add(state.agent_sink, session_id, order_id, AGENT, acp_type, acp_event)
    return True


def enqueue_order_created(
    state: ShopState, session_id: str, payload: Mapping[str, Any], encoded: str | None = None
) -> None:
    """Queue the merchant's order (and the agent platform's order_create) for a paid session.

    `encoded` is `payload` as fast_json.dumps writes it (the session's order_payload column).
    """
    _enqueue(
        state, session_id, payload, "order.created", payload, "order_create", "confirmed", encoded
    )


def enqueue_order_flagged(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    reference: str | None,
    flag: Mapping[str, Any] | None = None,
) -> None:
    """Queue `order.flagged` for the merchant (and order_update for the agent platform).

    `flag` adds to (or overrides) the flag object, e.g. {"reason": "amount_mismatch", …}.
    """
    flagged = {
        **payload,
        "event": "order.flagged",
        "flag": {"reason": "dispute", "payment_reference": reference, **(flag or {})},
    }
    _enqueue(state, session_id, payload, "order.flagged", flagged, "order_update", "manual_review")


def enqueue_order_canceled(
    state: ShopState,
    session_id: str,
    payload: Mapping[str, Any],
    reason: str,
    reference: str | None,
    amount_refunded: int,
) -> bool:
    """Queue `order.canceled` (and order_update `canceled`); False when already queued.

    The unique (session, destination, event) row is the claim: a second refund event, or two
    workers applying the same one, insert nothing.
    """
    canceled = {
        **payload,
        "event": "order.canceled",
        "cancel": {
            "reason": reason,
            "payment_reference": reference,
            "amount_refunded": amount_refunded,
        },
    }
    refund = {
        "id": f"adj_refund_{payload['order']['id']}",
        "amount": amount_refunded,
        "occurred_at": clock.iso(clock.epoch()),
        "reason": reason,
    }
    return _enqueue(
        state,
        session_id,
        payload,
        "order.canceled",
        canceled,
        "order_update",
        "canceled",
        refund=refund,
    )
