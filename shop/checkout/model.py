"""The checkout domain's vocabulary: statuses, messages, a change request, a session view."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shop.pricing.quotes import CartLine, Quote

log = logging.getLogger("shop.checkout")


MAX_QUANTITY = 999
MAX_LINES = 100
# A session's coupon codes: each is echoed in the answer (codes, applied/rejected, a message)
# and stored, so a request may not carry more than a buyer would ever type.
MAX_COUPON_CODES = 10
MAX_COUPON_CODE_LENGTH = 64


class Status(StrEnum):
    NOT_READY = "not_ready_for_payment"
    READY = "ready_for_payment"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"
    EXPIRED = "expired"


OPEN = (Status.NOT_READY, Status.READY)


@dataclass(frozen=True, slots=True)
class Message:
    type: str  # error | warning | info
    content: str
    code: str | None = None
    param: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInput:
    """A create or update request; None leaves a field as it was."""

    lines: tuple[CartLine, ...] | None = None
    buyer: Mapping[str, Any] | None = None
    fulfillment_details: Mapping[str, Any] | None = None
    option_id: str | None = None
    coupon_codes: tuple[str, ...] | None = None
    order_notes: str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class SessionView:
    """Everything a surface needs to render a session."""

    id: str
    status: Status
    currency: str
    created_at: int
    updated_at: int
    expires_at: int
    details: Mapping[str, Any]
    quote: Quote
    messages: tuple[Message, ...]
    availability: Mapping[str, int | None] = field(default_factory=dict)
    order_id: str | None = None
    permalink_url: str | None = None
    payment_reference: str | None = None
    provider_order_id: str | None = None


def new_session_id() -> str:
    """Return a fresh, unguessable session id."""
    return "cs_" + secrets.token_hex(12)


def order_id_for(session_id: str) -> str:
    """Return the order id of a session (stable: retries and replays reuse it)."""
    return f"order_{session_id}"
