"""The checkout domain: the session state machine behind every surface (ACP, short routes, Forter).

Speaks plain Python and integer minor units; never imports flask.request. Each step of
complete is safe to retry: the session row is claimed with a conditional UPDATE, stock is
reserved in the same transaction, the provider is called outside any transaction with an
idempotency key, and the outcome is written with another conditional UPDATE.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update

from shop import clock, metrics, session_rows, stock
from shop.db import CheckoutSession, db
from shop.errors import InvalidRequestError, NotFoundError, ProviderError, ShopError
from shop.payments import ChargeRequest, ChargeStatus, PaymentCredential
from shop.pricing import Cart, CartLine, Quote, price_cart
from shop.session_rows import SessionRecord
from shop.state import ShopState

log = logging.getLogger("shop.checkout")

MAX_QUANTITY = 999
MAX_LINES = 100


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


# ---------------------------------------------------------------- reading


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        "session_not_found",
        f"No checkout session has the id '{session_id}'; create one with POST /checkout_sessions.",
        "$.checkout_session_id",
    )


def _load(session_id: str) -> CheckoutSession:
    row = db.session.get(CheckoutSession, session_id)
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
        db.session.commit()
        record = _read(session_id)
    return record


def _expire_if_due(row: CheckoutSession) -> None:
    if row.status in OPEN and row.expires_at <= clock.epoch():
        db.session.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == row.id, CheckoutSession.status.in_(list(OPEN)))
            .values(status=Status.EXPIRED, updated_at=clock.epoch())
        )
        db.session.commit()
        db.session.refresh(row)


def _cart(details: Mapping[str, Any]) -> Cart:
    address = (details.get("fulfillment_details") or {}).get("address")
    return Cart(
        lines=tuple(CartLine(li["item_id"], li["quantity"]) for li in details["lines"]),
        address=address,
        option_id=details.get("option_id"),
        coupon_codes=tuple(details.get("coupons") or ()),
    )


Assessment = tuple[Quote, list[Message], dict[str, int | None], bool]


def _assess(state: ShopState, details: Mapping[str, Any]) -> Assessment:
    """Price the cart and list what stands between it and payment."""
    quote = price_cart(state.settings, state.catalog, _cart(details), clock.now())
    availability = stock.available_quantities(state.catalog)
    messages: list[Message] = []
    ready = True
    wanted: dict[str, int] = {}
    for line in quote.lines:
        wanted[line.item.id] = wanted.get(line.item.id, 0) + line.quantity
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
    state: ShopState, row: CheckoutSession | SessionRecord, assessed: Assessment | None = None
) -> SessionView:
    """Describe a session; `assessed` is the cart's assessment when the caller just made it."""
    details = json.loads(row.cart)
    quote, messages, availability, _ready = assessed or _assess(state, details)
    notices = [Message(**n) for n in json.loads(row.notices or "[]")]
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


def get_session(state: ShopState, session_id: str) -> SessionView:
    """Return a session as it stands now (expiring it when its TTL has passed)."""
    return _view(state, _current(session_id))


# ---------------------------------------------------------------- writing


def _validated_lines(state: ShopState, lines: tuple[CartLine, ...]) -> list[dict[str, Any]]:
    if not lines:
        raise InvalidRequestError(
            "missing_line_items",
            'line_items must list at least one item, e.g. [{"id": "widget", "quantity": 1}].',
            "$.line_items",
        )
    if len(lines) > MAX_LINES:
        raise InvalidRequestError(
            "too_many_line_items",
            f"A session holds at most {MAX_LINES} line items.",
            "$.line_items",
        )
    for index, line in enumerate(lines):
        if state.catalog.item(line.item_id) is None:
            raise InvalidRequestError(
                "invalid_item",
                f"line_items[{index}].id '{line.item_id}' is not sold here; "
                "use an id from the product feed (/feeds/products.json).",
                f"$.line_items[{index}].id",
            )
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidRequestError(
                "invalid_quantity",
                f"line_items[{index}].quantity must be between 1 and "
                f"{MAX_QUANTITY}, got {line.quantity}.",
                f"$.line_items[{index}].quantity",
            )
    return [{"item_id": li.item_id, "quantity": li.quantity} for li in lines]


def _merge(state: ShopState, details: dict[str, Any], change: SessionInput) -> dict[str, Any]:
    if change.currency is not None and change.currency.lower() != state.settings.currency:
        raise InvalidRequestError(
            "unsupported_currency",
            f"This store sells in '{state.settings.currency}', not "
            f"'{change.currency}'; send currency \"{state.settings.currency}\".",
            "$.currency",
        )
    merged = dict(details)
    if change.lines is not None:
        merged["lines"] = _validated_lines(state, change.lines)
    if change.buyer is not None:
        merged["buyer"] = dict(change.buyer)
    if change.fulfillment_details is not None:
        merged["fulfillment_details"] = dict(change.fulfillment_details)
    if change.option_id is not None:
        merged["option_id"] = change.option_id
    if change.coupon_codes is not None:
        merged["coupons"] = list(change.coupon_codes)
    if change.order_notes is not None:
        merged["order_notes"] = change.order_notes
    return merged


def _status_for(ready: bool) -> Status:
    return Status.READY if ready else Status.NOT_READY


def _prepare_payment(
    state: ShopState, record: SessionRecord, quote: Quote, ready: bool
) -> SessionRecord:
    """Create or refresh the provider-side order (Razorpay) when the payable total changes."""
    if not ready or record.provider_order_amount == quote.total:
        return record
    try:
        reference = state.provider.prepare(
            record.id, quote.total, quote.currency, record.provider_order_id
        )
    except ProviderError as exc:
        raise _provider_unavailable(exc) from exc
    if reference is None:
        return record
    return replace(record, provider_order_id=reference, provider_order_amount=quote.total)


def create_session(
    state: ShopState, change: SessionInput, session_id: str | None = None, *, commit: bool = True
) -> SessionView:
    """Open a new session from a create request.

    With commit=False the row is written in the caller's transaction, which commits it (the
    ACP surface commits it with the stored idempotent response).
    """
    if change.lines is None:
        change = replace(change, lines=())
    details = _merge(state, {"lines": []}, change)
    assessed = _assess(state, details)
    now = clock.epoch()
    record = SessionRecord(
        id=session_id or new_session_id(),
        status=_status_for(assessed[3]),
        currency=state.settings.currency,
        created_at=now,
        updated_at=now,
        expires_at=now + state.settings.session_ttl_minutes * 60,
        cart=json.dumps(details),
        notices="[]",
    )
    record = _prepare_payment(state, record, assessed[0], assessed[3])
    session_rows.insert_row(record, details)
    if commit:
        db.session.commit()
    return _view(state, record, assessed)


def _require_open(row: CheckoutSession | SessionRecord, action: str) -> None:
    if row.status in OPEN:
        return
    if row.status == Status.EXPIRED:
        return  # rendered as an expired session with a message, not an error
    raise ShopError(
        405,
        "invalid_request",
        f"session_{row.status}",
        f"Checkout session '{row.id}' is {row.status} and cannot be {action}; start a new session.",
    )


UPDATE_TRIES = 5


def update_session(
    state: ShopState, session_id: str, change: SessionInput, *, commit: bool = True
) -> SessionView:
    """Apply an update request to an open session.

    The session is read outside the transaction and written only if it is still as read
    (status and cart), so a concurrent update or payment is never overwritten: the loser
    reads again and applies its change to what is there now. With commit=False the write is
    left to the caller's transaction (see create_session).
    """
    for _try in range(UPDATE_TRIES):
        seen = _current(session_id)
        _require_open(seen, "updated")
        if seen.status == Status.EXPIRED:
            return _view(state, seen)
        details = _merge(state, json.loads(seen.cart), change)
        assessed = _assess(state, details)
        new = replace(
            seen,
            status=_status_for(assessed[3]),
            cart=json.dumps(details),
            notices="[]",
            updated_at=clock.epoch(),
        )
        new = _prepare_payment(state, new, assessed[0], assessed[3])
        if session_rows.update_open(seen, new, details):
            if commit:
                db.session.commit()
            return _view(state, new, assessed)
    raise ShopError(
        409,
        "invalid_request",
        "session_busy",
        f"Checkout session '{session_id}' kept changing while this update was "
        "applied; send the update again.",
        headers={"Retry-After": "1"},
        replayable=False,
    )


def cancel_session(state: ShopState, session_id: str) -> SessionView:
    """Cancel an open session; completed, canceled and paying sessions answer 405."""
    row = _load(session_id)
    _expire_if_due(row)
    if row.status not in OPEN:
        raise ShopError(
            405,
            "invalid_request",
            f"session_{row.status}",
            f"Checkout session '{session_id}' is {row.status} and cannot be canceled.",
        )
    result = db.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == session_id, CheckoutSession.status.in_(list(OPEN)))
        .values(
            status=Status.CANCELED,
            updated_at=clock.epoch(),
            notices=json.dumps(
                [{"type": "info", "content": "Checkout session has been canceled."}]
            ),
        )
    )
    db.session.commit()
    if result.rowcount != 1:
        return cancel_session(state, session_id)  # lost a race: answer from the new state
    db.session.refresh(row)
    return _view(state, row)


def _provider_unavailable(exc: ProviderError, paying: bool = False) -> ShopError:
    log.error("payment provider error: %s", exc)
    if exc.retryable:
        return ShopError(
            424,
            "processing_error",
            "payment_provider_unavailable",
            "The payment provider could not be reached; nothing was charged. Retry in a moment.",
            headers={"Retry-After": "5"},
            replayable=False,
        )
    if paying:
        # e.g. Stripe stored its 500 under this token's idempotency key: the same token can
        # only replay that failure, so waiting and retrying would not help.
        return ShopError(
            424,
            "processing_error",
            "payment_provider_error",
            "The payment provider could not process this payment and will answer the same for "
            "this payment token; nothing was charged. Complete again with a new payment token "
            "in payment_data.",
            "$.payment_data",
            replayable=False,
        )
    return ShopError(
        424,
        "processing_error",
        "payment_provider_error",
        "The payment provider refused to set up this payment; nothing was charged, and "
        "retrying will not help until the store fixes it (its log names the reason).",
        replayable=False,
    )


def _notice(message: Message) -> str:
    return json.dumps(
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


def _cart_lines(row: CheckoutSession) -> list[tuple[str, int]]:
    return [(line.item_id, line.quantity) for line in _cart(json.loads(row.cart)).lines]


def complete_session(
    state: ShopState,
    session_id: str,
    credential: PaymentCredential,
    buyer: Mapping[str, Any] | None = None,
) -> SessionView:
    """Reserve stock, charge once, and complete the session (or say why not)."""
    # Read outside the transaction; the claim below re-checks status and cart in its WHERE,
    # so the write lock is held only from the claim to the commit.
    row = _current(session_id)
    if row.status in (Status.COMPLETED, Status.IN_PROGRESS, Status.EXPIRED):
        return _view(state, row)  # already paid / paying / over: never charge again
    if row.status == Status.CANCELED:
        _require_open(row, "completed")
    details = json.loads(row.cart)
    if buyer is not None:
        details["buyer"] = dict(buyer)
    quote, _messages, _availability, ready = _assess(state, details)
    if not ready:
        new = replace(
            row, cart=json.dumps(details), status=Status.NOT_READY, updated_at=clock.epoch()
        )
        written = session_rows.update_open(row, new, details)
        db.session.commit()
        return _view(state, new if written else _read(session_id))
    lines = [(line.item.id, line.quantity) for line in quote.lines]
    now = clock.epoch()
    # payment_reference is cleared: until this attempt's answer stores its own, no provider
    # event (a late failure of an earlier attempt) can match the session's current attempt.
    claimed = (
        db.session.execute(
            update(CheckoutSession)
            .where(
                CheckoutSession.id == session_id,
                CheckoutSession.status.in_(list(OPEN)),
                CheckoutSession.cart == row.cart,
            )
            .values(
                status=Status.IN_PROGRESS,
                cart=json.dumps(details),
                updated_at=now,
                notices="[]",
                stock_reserved=1,
                payment_reference=None,
            )
        ).rowcount
        == 1
    )
    short = stock.reserve_stock(state.catalog, lines) if claimed else None
    if not claimed or short is not None:
        db.session.rollback()
        if short is not None:
            item = state.catalog.items[short]
            index = next(i for i, (item_id, _q) in enumerate(lines) if item_id == short)
            _finish(
                session_id,
                Status.NOT_READY,
                stock_reserved=0,
                notices=_notice(
                    Message(
                        "error",
                        f"'{item.title}' sold out before payment; nothing was charged.",
                        "out_of_stock",
                        f"$.line_items[{index}]",
                    )
                ),
            )
        return _view(state, _read(session_id))  # committed: read it as it is now
    # Read before the commit: touching `row` after it would reload it in a new transaction,
    # and on SQLite a transaction holds the write lock for the whole provider call.
    provider_order_id = row.provider_order_id
    db.session.commit()
    request = ChargeRequest(
        session_id=session_id,
        amount=quote.total,
        currency=quote.currency,
        credential=credential,
        description=f"{state.settings.store_name} checkout {session_id}",
        provider_order_id=provider_order_id,
    )
    try:
        result = state.provider.charge(request)
    except ProviderError as exc:
        _release(state, session_id, lines, "[]")
        raise _provider_unavailable(exc, paying=True) from exc
    except Exception:
        # An unexpected bug must not strand reserved stock: give it back, then let it surface.
        _release(state, session_id, lines, "[]")
        raise
    if result.status == ChargeStatus.DECLINED:
        metrics.inc("shop_payment_declines_total", via="complete")
        _release(
            state,
            session_id,
            lines,
            _declined(
                result.message,
                "requires_3ds" if result.decline_code == "requires_3ds" else "payment_declined",
            ),
        )
    elif result.status == ChargeStatus.PENDING:
        _finish(
            session_id,
            Status.IN_PROGRESS,
            payment_reference=result.reference,
            payment_provider=state.provider.name,
        )
    elif mark_paid(
        state, session_id, result.reference, quote.total, from_status=Status.IN_PROGRESS
    ):
        metrics.inc("shop_checkouts_completed_total", via="complete")
    return _view(state, _read(session_id))  # committed: read it as it is now


def _finish(session_id: str, status: Status, **values: Any) -> None:
    db.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == session_id)
        .values(status=status, updated_at=clock.epoch(), **values)
    )
    db.session.commit()


def _release(
    state: ShopState, session_id: str, lines: list[tuple[str, int]], notices: str, *conditions: Any
) -> bool:
    """Give the reservation back and reopen the session, in one transaction (the caller's).

    Only a paying session holding stock (and matching `conditions`) is released; return
    whether this call released it.
    """
    released = (
        db.session.execute(
            update(CheckoutSession)
            .where(
                CheckoutSession.id == session_id,
                CheckoutSession.stock_reserved == 1,
                CheckoutSession.status == Status.IN_PROGRESS,
                *conditions,
            )
            .values(
                status=Status.READY, stock_reserved=0, updated_at=clock.epoch(), notices=notices
            )
        ).rowcount
        == 1
    )
    if released:
        stock.release_stock(state.catalog, lines)
    db.session.commit()
    return released


# ------------------------------------------- payment outcomes (complete and provider webhooks)


class Settlement(StrEnum):
    """What a provider's "paid" did to a session."""

    COMPLETED = "completed"
    COMPLETED_AMOUNT_MISMATCH = "completed_amount_mismatch"
    ALREADY_COMPLETED = "already_completed"


def fail_payment(
    state: ShopState, session_id: str, reference: str | None, message: str | None
) -> bool:
    """Reopen a paying session whose current attempt failed; give its stock back.

    Only the attempt whose reference the session stores counts: a late failure of an earlier
    attempt, or any failure while a charge is still in flight (no reference stored yet),
    changes nothing. Return whether the session was reopened.
    """
    if not reference:
        return False
    lines = _cart_lines(_load(session_id))
    return _release(
        state, session_id, lines, _declined(message), CheckoutSession.payment_reference == reference
    )


def settle_payment(
    state: ShopState,
    session_id: str,
    reference: str | None,
    amount: int | None,
    currency: str | None,
) -> Settlement:
    """Complete a session its provider reports paid, in one transaction (the caller's).

    A paid order is never lost: a session that gave its stock back takes it again when it is
    there, and completes either way. A payment of another amount or currency completes
    flagged for review. `amount` None (the provider does not say) is taken as the total.
    """
    from shop import delivery

    row = _load(session_id)
    currency_now = row.currency
    _retake_stock(state, session_id, _cart_lines(row), reference)
    payload = _payload(state, row, reference, amount)
    total = next((t["amount"] for t in payload["totals"] if t["type"] == "total"), None)
    paid = amount if amount is not None else total
    if not _record_paid(
        state, session_id, reference, paid or 0, payload, CheckoutSession.status != Status.COMPLETED
    ):
        db.session.commit()
        return Settlement.ALREADY_COMPLETED
    paid_currency = (currency or currency_now).lower()
    settled = Settlement.COMPLETED
    if paid != total or paid_currency != currency_now.lower():
        # The money was taken, so the order still goes out, but flagged: the merchant decides
        # between shipping, charging the difference and refunding (docs/decisions.md).
        log.error(
            "AMOUNT MISMATCH: %s payment %s paid %s %s but session %s totals %s %s; the "
            "order is handed over FLAGGED for review — refund or collect the difference "
            "before shipping",
            state.provider.name,
            reference,
            paid,
            paid_currency,
            session_id,
            total,
            currency_now,
        )
        _flag(
            state,
            session_id,
            reference,
            {"reason": "amount_mismatch", "amount_paid": paid, "currency_paid": paid_currency},
        )
        settled = Settlement.COMPLETED_AMOUNT_MISMATCH
    db.session.commit()
    delivery.schedule(state, session_id)
    return settled


def _retake_stock(
    state: ShopState, session_id: str, lines: list[tuple[str, int]], reference: str | None
) -> None:
    """Reserve stock again for a paid session that had given it back (a decline, an expiry).

    The flag flip decides who reserves (one conditional UPDATE); a shortfall undoes both
    through a savepoint and is logged, since the payment still completes.
    """
    savepoint = db.session.begin_nested()
    taken = (
        db.session.execute(
            update(CheckoutSession)
            .where(
                CheckoutSession.id == session_id,
                CheckoutSession.stock_reserved == 0,
                CheckoutSession.status != Status.COMPLETED,
            )
            .values(stock_reserved=1)
        ).rowcount
        == 1
    )
    short = stock.reserve_stock(state.catalog, lines) if taken else None
    if short is None:
        savepoint.commit()
        return
    savepoint.rollback()
    log.error(
        "OVERSOLD: session %s was paid (%s) but '%s' is out of stock; the order is still "
        "handed over — contact the buyer",
        session_id,
        reference,
        short,
    )


def flag_for_review(state: ShopState, session_id: str, reason: str, reference: str | None) -> bool:
    """Flag a session for review and queue order.flagged once; False when already flagged."""
    from shop import delivery

    flagged = _flag(state, session_id, reference, {"reason": reason})
    db.session.commit()
    if flagged:
        delivery.schedule(state, session_id)
    return flagged


def _flag(
    state: ShopState, session_id: str, reference: str | None, flag: Mapping[str, Any]
) -> bool:
    from shop import delivery

    flagged = (
        db.session.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == session_id, CheckoutSession.flagged == 0)
            .values(flagged=1, updated_at=clock.epoch())
        ).rowcount
        == 1
    )
    payload = (
        db.session.execute(
            select(CheckoutSession.order_payload).where(CheckoutSession.id == session_id)
        ).scalar_one_or_none()
        if flagged
        else None
    )
    if payload:  # a session flagged before it was paid has no order to tell anyone about yet
        delivery.enqueue_order_flagged(state, session_id, json.loads(payload), reference, flag)
    return flagged


def mark_paid(
    state: ShopState,
    session_id: str,
    reference: str | None,
    amount: int,
    from_status: Status | None = None,
) -> bool:
    """Record a final payment and queue the order hand-off; False when it was already recorded."""
    from shop import delivery

    row = _read(session_id)  # committed; _record_paid's condition re-checks the status
    payload = _payload(state, row, reference, amount)
    condition = (
        CheckoutSession.status == from_status
        if from_status
        else CheckoutSession.status != Status.COMPLETED
    )
    paid = _record_paid(state, session_id, reference, amount, payload, condition)
    db.session.commit()
    if paid:
        delivery.schedule(state, session_id)
    return paid


def _record_paid(
    state: ShopState,
    session_id: str,
    reference: str | None,
    amount: int,
    payload: Mapping[str, Any],
    condition: Any,
) -> bool:
    """In the current transaction: complete the session and queue order.created, if `condition`."""
    from shop import delivery

    paid = (
        db.session.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == session_id, condition)
            .values(
                status=Status.COMPLETED,
                order_id=order_id_for(session_id),
                payment_reference=reference,
                payment_provider=state.provider.name,
                amount_paid=amount,
                updated_at=clock.epoch(),
                notices="[]",
                order_payload=json.dumps(payload),
            )
        ).rowcount
        == 1
    )
    if paid:
        delivery.enqueue_order_created(state, session_id, payload)
    return paid


def _payload(
    state: ShopState, row: CheckoutSession, reference: str | None, amount: int | None
) -> dict[str, Any]:
    """Build the order payload; a failure must never keep a paid session from completing."""
    from shop.order_payload import minimal_order_payload, order_payload

    try:
        return order_payload(state, row, reference=reference, provider=state.provider.name)
    except Exception:
        # e.g. the item was removed from products.json while the payment was pending.
        log.exception(
            "ORDER PAYLOAD FAILED for session %s (payment %s): the cart could not be "
            "priced again, so order_%s goes out with items, quantities and the amount "
            "paid only; check it by hand before shipping",
            row.id,
            reference,
            row.id,
        )
        return minimal_order_payload(
            state, row, reference=reference, provider=state.provider.name, amount=amount or 0
        )


# ------------------------------------------------------------- payments that never finished

# A worker that dies between claiming a session and storing the provider's answer leaves it
# paying with no payment reference. Providers answer within 30 s (TIMEOUT in shop/payments),
# so a claim quiet for this long is stalled, not slow.
STALLED_CLAIM_SECONDS = 15 * 60
# A payment the provider called pending (processing, 3DS) that no webhook settled in this long
# gives its stock back; the provider's dashboard is where it is resolved by hand.
UNSETTLED_PAYMENT_SECONDS = 7 * 86400


def release_stuck_payments(state: ShopState) -> list[str]:
    """Reopen paying sessions that will never hear from their provider, giving stock back.

    Safe if the provider did charge after all: its paid webhook still completes the session
    (settle_payment takes the stock again), and a retry with the same token replays the
    provider's stored answer. Return the ids of the sessions reopened.
    """
    now = clock.epoch()
    stuck = (
        (
            CheckoutSession.payment_reference.is_(None),
            CheckoutSession.updated_at < now - STALLED_CLAIM_SECONDS,
            "STALLED PAYMENT: the worker paying session %s stopped before the provider "
            "answered; its stock is given back and the buyer may pay again — if the provider "
            "did charge, its webhook completes the order",
        ),
        (
            CheckoutSession.payment_reference.is_not(None),
            CheckoutSession.updated_at < now - UNSETTLED_PAYMENT_SECONDS,
            "PAYMENT NEVER SETTLED: session %s (payment %s) waited 7 days for its provider's "
            "webhook; its stock is given back — look the payment up in the provider's dashboard",
        ),
    )
    reopened = []
    for has_reference, quiet, warning in stuck:
        rows = (
            db.session.execute(
                select(CheckoutSession).where(
                    CheckoutSession.status == Status.IN_PROGRESS, has_reference, quiet
                )
            )
            .scalars()
            .all()
        )
        for row in rows:
            session_id, reference, lines = row.id, row.payment_reference, _cart_lines(row)
            if _release(
                state,
                session_id,
                lines,
                _declined(
                    "The last payment attempt did not finish; nothing is known to have been "
                    "charged. Please complete the checkout again."
                ),
                has_reference,
                quiet,
            ):
                log.error(warning, session_id, *([reference] if reference else []))
                reopened.append(session_id)
    db.session.commit()
    return reopened
