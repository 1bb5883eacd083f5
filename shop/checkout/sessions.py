"""Open, update and cancel sessions (everything before payment)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import update

from shop import clock, fast_json, metrics
from shop.checkout import session_rows, tally
from shop.checkout.model import (
    MAX_COUPON_CODE_LENGTH,
    MAX_COUPON_CODES,
    MAX_LINES,
    MAX_QUANTITY,
    OPEN,
    SessionInput,
    SessionView,
    Status,
    new_session_id,
)
from shop.checkout.reading import (
    _assess,
    _current,
    _expire_if_due,
    _load,
    _read,
    _view,
    check_owner,
)
from shop.checkout.session_rows import SessionRecord
from shop.errors import InvalidRequestError, ProviderError, ShopError
from shop.pricing.quotes import CartLine, Quote
from shop.state import ShopState
from shop.storage import health, transaction
from shop.storage.models import CheckoutSession

log = logging.getLogger("shop.checkout")


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


def _checked_codes(codes: tuple[str, ...]) -> list[str]:
    """Refuse more coupon codes, or longer ones, than any buyer types (every surface)."""
    if len(codes) > MAX_COUPON_CODES:
        raise InvalidRequestError(
            "too_many_coupon_codes",
            f"A session takes at most {MAX_COUPON_CODES} coupon codes; {len(codes)} were sent.",
            "$.coupons",
        )
    for index, code in enumerate(codes):
        if len(code) > MAX_COUPON_CODE_LENGTH:
            raise InvalidRequestError(
                "coupon_code_too_long",
                f"Coupon codes are at most {MAX_COUPON_CODE_LENGTH} characters; "
                f"code {index} has {len(code)}.",
                f"$.coupons[{index}]",
            )
    return list(codes)


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
        merged["coupons"] = _checked_codes(change.coupon_codes)
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
    state: ShopState,
    change: SessionInput,
    session_id: str | None = None,
    *,
    commit: bool = True,
    owner: str | None = None,
    before_write: Callable[[SessionView], None] | None = None,
) -> SessionView:
    """Open a new session from a create request.

    With commit=False the row is written in the caller's transaction, which commits it (the
    ACP surface commits it with the stored idempotent response). `owner` (the API key's name)
    is the only caller that may read or change the session afterwards. `before_write(view)` is
    called with the view this returns before the row is written: a caller renders its answer
    there, while no write lock is held (every worker waits for that lock; issue 12).
    """
    health.require_writable()  # a database that cannot keep it takes no new checkout (503)
    if change.lines is None:
        change = replace(change, lines=())
    details = _merge(
        state, {"lines": []} if owner is None else {"lines": [], "owner": owner}, change
    )
    assessed = _assess(state, details)
    now = clock.epoch()
    record = SessionRecord(
        id=session_id or new_session_id(),
        status=_status_for(assessed[3]),
        currency=state.settings.currency,
        created_at=now,
        updated_at=now,
        expires_at=now + state.settings.session_ttl_minutes * 60,
        cart=fast_json.dumps(details),
        notices="[]",
    )
    record = _prepare_payment(state, record, assessed[0], assessed[3])
    view = _view(state, record, assessed, details)
    if before_write is not None:
        before_write(view)
    session_rows.insert_row(record, details)
    tally.add("sessions_created")
    transaction.after_commit(metrics.SESSIONS_CREATED.inc)  # a create rolled back is not one
    if commit:
        transaction.commit()
    return view


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
    state: ShopState,
    session_id: str,
    change: SessionInput,
    *,
    commit: bool = True,
    owner: str | None = None,
    before_write: Callable[[SessionView], None] | None = None,
) -> SessionView:
    """Apply an update request to an open session.

    The session is read outside the transaction and written only if it is still as read
    (status and cart), so a concurrent update or payment is never overwritten: the loser
    reads again and applies its change to what is there now. With commit=False the write is
    left to the caller's transaction, and `before_write` is called before each try to write (see
    create_session; the last call's view is the one returned).
    """
    for _try in range(UPDATE_TRIES):
        seen = _current(session_id)
        stored = fast_json.loads(seen.cart)
        check_owner(session_id, stored, owner)
        _require_open(seen, "updated")
        if seen.status == Status.EXPIRED:
            return _view(state, seen, details=stored)
        seen_buyer = session_rows.buyer_columns(stored)
        details = _merge(state, stored, change)
        assessed = _assess(state, details)
        new = replace(
            seen,
            status=_status_for(assessed[3]),
            cart=fast_json.dumps(details),
            notices="[]",
            updated_at=clock.epoch(),
        )
        new = _prepare_payment(state, new, assessed[0], assessed[3])
        view = _view(state, new, assessed, details)
        if before_write is not None:
            before_write(view)
        if session_rows.update_open(seen, new, details, seen_buyer):
            if commit:
                transaction.commit()
            return view
    raise ShopError(
        409,
        "invalid_request",
        "session_busy",
        f"Checkout session '{session_id}' kept changing while this update was "
        "applied; send the update again.",
        headers={"Retry-After": "1"},
        replayable=False,
    )


def cancel_session(state: ShopState, session_id: str, owner: str | None = None) -> SessionView:
    """Cancel an open session; completed, canceled and paying sessions answer 405."""
    row = _expire_if_due(_load(session_id))
    check_owner(session_id, fast_json.loads(row.cart), owner)
    if row.status not in OPEN:
        raise ShopError(
            405,
            "invalid_request",
            f"session_{row.status}",
            f"Checkout session '{session_id}' is {row.status} and cannot be canceled.",
        )
    result = transaction.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == session_id, CheckoutSession.status.in_(list(OPEN)))
        .values(
            status=Status.CANCELED,
            updated_at=clock.epoch(),
            notices=fast_json.dumps(
                [{"type": "info", "content": "Checkout session has been canceled."}]
            ),
        )
    )
    if result.rowcount == 1:
        tally.add("canceled")
    transaction.commit()
    if result.rowcount != 1:
        return cancel_session(state, session_id, owner)  # lost a race: answer from the new state
    metrics.SESSIONS_CANCELED.inc()
    return _view(state, _read(session_id))


def _provider_of(exc: ProviderError) -> str:
    text = str(exc).lower()
    return next((name for name in ("stripe", "razorpay") if name in text), "test")


def _provider_unavailable(exc: ProviderError, paying: bool = False) -> ShopError:
    if exc.setup:
        # The merchant's to fix (a key, a permission, a parameter): never the buyer's card.
        metrics.inc("shop_payment_setup_errors_total", provider=_provider_of(exc))
        log.error("PAYMENT SETUP ERROR, no payment can succeed until it is fixed: %s", exc)
        return ShopError(
            503,
            "processing_error",
            "payment_provider_error",
            "The store's payment setup was refused by its payment provider, so no payment can "
            "be taken right now; nothing was charged. The merchant has been alerted; try again "
            "later.",
            replayable=False,
        )
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
