"""Reading sessions: load, expire when due, price and assess, and render a SessionView."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import update

from shop import clock, fast_json, metrics
from shop.checkout import session_rows, stock, tally
from shop.checkout.model import OPEN, Message, SessionView, Status
from shop.checkout.session_rows import SessionRecord
from shop.errors import NotFoundError
from shop.pricing.countries import is_country
from shop.pricing.quotes import Quote, cart_of, price_cart
from shop.state import ShopState
from shop.storage import transaction
from shop.storage.models import CheckoutSession

log = logging.getLogger("shop.checkout")


# ---------------------------------------------------------------- reading


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        "session_not_found",
        f"No checkout session has the id '{session_id}'; create one with POST /checkout_sessions.",
        "$.checkout_session_id",
    )


def check_owner(session_id: str, details: Mapping[str, Any], owner: str | None) -> None:
    """Answer 404 to anyone but the API key that created a session.

    `owner` None is a caller that acts for the store itself (Forter, webhooks, the CLI). A
    session without an owner was made before sessions had one, or by such a caller.
    """
    if owner is not None and details.get("owner", owner) != owner:
        raise _not_found(session_id)


def _load(session_id: str) -> Any:
    """Read a session in the current transaction (beginning it); its columns as attributes."""
    row = session_rows.load(session_id)
    if row is None:
        raise _not_found(session_id)
    return row


def _read(session_id: str) -> SessionRecord:
    """Return the committed state of a session, read outside the transaction."""
    record = session_rows.find(session_id)
    if record is None:
        raise _not_found(session_id)
    return record


def _current(session_id: str) -> SessionRecord:
    """Read a session, expiring it first when its TTL has passed."""
    record = _read(session_id)
    now = clock.epoch()
    if record.status in OPEN and record.expires_at <= now:
        session_rows.expire(session_id, OPEN, Status.EXPIRED, now)
        transaction.commit()
        record = _read(session_id)
    return record


def _expire_if_due(row: Any) -> Any:
    """Expire a session read by _load when its TTL has passed; return it as it is now."""
    if row.status in OPEN and row.expires_at <= clock.epoch():
        expired = transaction.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == row.id, CheckoutSession.status.in_(list(OPEN)))
            .values(status=Status.EXPIRED, updated_at=clock.epoch())
        ).rowcount
        if expired:
            tally.add("expired")
        transaction.commit()
        if expired:
            metrics.SESSIONS_EXPIRED.inc()
        return _load(row.id)
    return row


Assessment = tuple[Quote, list[Message], dict[str, int | None], bool]


def _assess(state: ShopState, details: Mapping[str, Any]) -> Assessment:
    """Price the cart and list what stands between it and payment."""
    quote = price_cart(state.settings, state.catalog, cart_of(details), clock.now())
    messages: list[Message] = []
    ready = True
    wanted: dict[str, int] = {}
    for line in quote.lines:
        wanted[line.item.id] = wanted.get(line.item.id, 0) + line.quantity
    availability = stock.availability_for(state.catalog, wanted)
    for index, line in enumerate(quote.lines):
        left = availability.get(line.item.id)
        if left is not None and wanted[line.item.id] > left:
            ready = False
            messages.append(
                Message(
                    "error",
                    f"Only {left} of '{line.item.title}' left in stock; lower the quantity "
                    "or remove the item."
                    if left
                    else f"'{line.item.title}' is out of stock.",
                    "out_of_stock",
                    f"$.line_items[{index}]",
                )
            )
    if quote.shippable and not _address(details):
        ready = False
        messages.append(
            Message(
                "error",
                "A shipping address is needed for physical items; send "
                "fulfillment_details.address.",
                "missing",
                "$.fulfillment_details.address",
            )
        )
    country = str((_address(details) or {}).get("country") or "")
    if country and not is_country(country):
        # Tax and shipping depend on the country: a mistyped one must not price as untaxed.
        ready = False
        messages.append(
            Message(
                "error",
                f"'{country[:40]}' is not a country code; send the two-letter ISO 3166-1 "
                'code of the shipping country, e.g. "US", "DE" or "IN".',
                "invalid",
                "$.fulfillment_details.address.country",
            )
        )
    if quote.unknown_option_id is not None:
        ready = False
        messages.append(
            Message(
                "error",
                f"'{quote.unknown_option_id}' is not a fulfillment option of this session; "
                f"choose one of {', '.join(o.id for o in quote.options)}.",
                "invalid",
                "$.selected_fulfillment_options[0].option_id",
            )
        )
    elif quote.shippable and quote.selected is None:
        ready = False
        messages.append(
            Message(
                "error",
                "This store has no shipping option for this cart.",
                "unsupported",
                "$.selected_fulfillment_options",
            )
        )
    for outcome in quote.coupons:
        if outcome.reason:
            messages.append(
                Message(
                    "error", _coupon_text(outcome.code, outcome.reason), outcome.reason, "$.coupons"
                )
            )
    return quote, messages, availability, ready


def _address(details: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (details.get("fulfillment_details") or {}).get("address")


def _coupon_text(code: str, reason: str) -> str:
    return {
        "coupon_invalid": f"The code '{code}' is not a valid coupon for this store.",
        "coupon_expired": f"The coupon '{code}' has expired.",
        "minimum_not_met": f"The coupon '{code}' needs a larger order subtotal.",
    }[reason]


def _view(
    state: ShopState,
    row: CheckoutSession | SessionRecord,
    assessed: Assessment | None = None,
    details: Mapping[str, Any] | None = None,
) -> SessionView:
    """Describe a session.

    `assessed` is the cart's assessment and `details` the cart as a dict (what `row.cart`
    decodes to), when the caller has them (create, update, complete): not decoded again.
    """
    if details is None:
        details = fast_json.loads(row.cart)
    quote, messages, availability, _ready = assessed or _assess(state, details)
    raw_notices = row.notices
    notices = (
        [Message(**n) for n in fast_json.loads(raw_notices)]
        if raw_notices and raw_notices != "[]"
        else []
    )
    status = Status(row.status)
    if status in (Status.COMPLETED, Status.CANCELED, Status.EXPIRED, Status.IN_PROGRESS):
        messages = [m for m in messages if m.code not in ("out_of_stock",)]
    if status == Status.EXPIRED:
        notices.append(
            Message("error", "This checkout session has expired; start a new one.", "expired")
        )
    order_id = row.order_id
    return SessionView(
        id=row.id,
        status=status,
        currency=row.currency,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        details=details,
        quote=quote,
        messages=tuple(notices + messages),
        availability=availability,
        order_id=order_id,
        permalink_url=state.settings.permalink_base + order_id if order_id else None,
        payment_reference=row.payment_reference,
        provider_order_id=row.provider_order_id,
    )


def get_session(state: ShopState, session_id: str, owner: str | None = None) -> SessionView:
    """Return a session as it stands now (expiring it when its TTL has passed)."""
    record = _current(session_id)
    details = fast_json.loads(record.cart)
    check_owner(session_id, details, owner)
    return _view(state, record, details=details)


def _notice(message: Message) -> str:
    return fast_json.dumps(
        [
            {
                k: v
                for k, v in (
                    ("type", message.type),
                    ("content", message.content),
                    ("code", message.code),
                    ("param", message.param),
                )
                if v is not None
            }
        ]
    )


def _declined(content: str | None, code: str = "payment_declined") -> str:
    return _notice(
        Message(
            "error",
            content or "Your payment was declined. Please try a different payment method.",
            code,
            "$.payment_data",
        )
    )


def _cart_lines(details: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The (item id, quantity) pairs of a decoded stored cart."""
    return [(line["item_id"], line["quantity"]) for line in details["lines"]]
