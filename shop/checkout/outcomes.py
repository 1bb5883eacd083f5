"""Payment outcomes, from complete and from provider webhooks: paid, failed, flagged."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, select, update

from shop import clock, fast_json, metrics, orders
from shop.checkout import stock, tally
from shop.checkout.model import Status, order_id_for
from shop.checkout.reading import _cart_lines, _declined, _load, _read
from shop.checkout.session_rows import SessionRecord
from shop.errors import ProviderError
from shop.money import charge_amount
from shop.orders.payload import minimal_order_payload, order_payload
from shop.pricing.quotes import Quote
from shop.state import ShopState
from shop.storage import transaction
from shop.storage.models import KEEP_ON_ERROR, PAYMENT_TAKEN, CheckoutSession
from shop.storage.transaction import write

log = logging.getLogger("shop.checkout")


def _finish(session_id: str, status: Status, **values: Any) -> None:
    transaction.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == session_id)
        .values(status=status, updated_at=clock.epoch(), **values)
    )
    transaction.commit()


def _release(
    state: ShopState, session_id: str, lines: list[tuple[str, int]], notices: str, *conditions: Any
) -> bool:
    """Give the reservation back and reopen the session, in one transaction (the caller's).

    Only a paying session holding stock (and matching `conditions`) is released; return
    whether this call released it.
    """
    released = (
        transaction.execute(
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
    transaction.commit()
    return released


# ------------------------------------------- payment outcomes (complete and provider webhooks)

_T = CheckoutSession.__table__
_PAID_VALUES = {
    "status": bindparam("p_completed"),
    "order_id": bindparam("p_order"),
    "payment_reference": bindparam("p_reference"),
    "payment_provider": bindparam("p_provider"),
    "amount_paid": bindparam("p_amount"),
    "updated_at": bindparam("p_now"),
    "notices": "[]",
    "order_payload": bindparam("p_payload"),
}
_PAID_FROM = (
    update(_T)
    .where(_T.c.id == bindparam("p_id"), _T.c.status == bindparam("p_from"))
    .values(_PAID_VALUES)
)
_PAID_UNLESS_COMPLETED = (
    update(_T)
    .where(_T.c.id == bindparam("p_id"), _T.c.status != bindparam("p_completed"))
    .values(_PAID_VALUES)
)


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
    lines = _cart_lines(fast_json.loads(_load(session_id).cart))
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
    row = _load(session_id)
    details = fast_json.loads(row.cart)
    currency_now = row.currency
    _retake_stock(state, session_id, _cart_lines(details), reference)
    payload = _payload(state, row, reference, amount, details=details)
    total = next((t["amount"] for t in payload["totals"] if t["type"] == "total"), None)
    paid = amount if amount is not None else total
    if not _record_paid(state, session_id, reference, paid or 0, payload, None):
        transaction.commit()
        return Settlement.ALREADY_COMPLETED
    paid_currency = (currency or currency_now).lower()
    settled = Settlement.COMPLETED
    # Three-decimal currencies are charged rounded to a multiple of 10 (shop/money.py).
    rounded = None if total is None else charge_amount(total, currency_now)
    if paid not in (total, rounded) or paid_currency != currency_now.lower():
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
    transaction.commit()  # the order goes out on the hand-off thread once committed
    return settled


def _retake_stock(
    state: ShopState, session_id: str, lines: list[tuple[str, int]], reference: str | None
) -> None:
    """Reserve stock again for a paid session that had given it back (a decline, an expiry).

    The flag flip decides who reserves (one conditional UPDATE); a shortfall undoes both
    through a savepoint and is logged, since the payment still completes.
    """
    with transaction.savepoint() as roll_back:
        _retake(state, session_id, lines, reference, roll_back)


def _retake(
    state: ShopState,
    session_id: str,
    lines: list[tuple[str, int]],
    reference: str | None,
    roll_back: Any,
) -> None:
    taken = (
        transaction.execute(
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
        return
    roll_back()
    log.error(
        "OVERSOLD: session %s was paid (%s) but '%s' is out of stock; the order is still "
        "handed over — contact the buyer",
        session_id,
        reference,
        short,
    )


def refund_duplicate(state: ShopState, session_id: str, reference: str, paid_by: str | None) -> str:
    """Refund a second payment for a session another payment already completed, and flag it.

    Return "duplicate_refunded"; raise ProviderError when the refund could not be made (the
    caller's provider event is then delivered again, and the log says to refund by hand).
    """
    log.error(
        "DUPLICATE PAYMENT: session %s was already paid by %s, and %s payment %s paid it again; "
        "refunding %s automatically",
        session_id,
        paid_by,
        state.provider.name,
        reference,
        reference,
    )
    try:
        refund_id = state.provider.refund(reference, session_id, "duplicate")
    except ProviderError as exc:
        metrics.inc("shop_duplicate_payments_total", outcome="refund_failed")
        log.error(
            "DUPLICATE PAYMENT NOT REFUNDED: %s payment %s for session %s could not be refunded "
            "(%s); refund it by hand in the provider's dashboard",
            state.provider.name,
            reference,
            session_id,
            exc,
        )
        raise
    metrics.inc("shop_duplicate_payments_total", outcome="refunded")
    flagged = _flag(
        state,
        session_id,
        reference,
        {"reason": "duplicate_payment", "refunded_payment": reference, "refund": refund_id},
    )
    transaction.commit()
    log.error(
        "DUPLICATE PAYMENT REFUNDED: %s payment %s (refund %s) for session %s%s",
        state.provider.name,
        reference,
        refund_id,
        session_id,
        "; order.flagged sent" if flagged else "; the session was already flagged",
    )
    return "duplicate_refunded"


def flag_for_review(state: ShopState, session_id: str, reason: str, reference: str | None) -> bool:
    """Flag a session for review and queue order.flagged once; False when already flagged."""
    flagged = _flag(state, session_id, reference, {"reason": reason})
    transaction.commit()
    return flagged


def _flag(
    state: ShopState, session_id: str, reference: str | None, flag: Mapping[str, Any]
) -> bool:
    flagged = (
        transaction.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == session_id, CheckoutSession.flagged == 0)
            .values(flagged=1, updated_at=clock.epoch())
        ).rowcount
        == 1
    )
    payload = (
        transaction.execute(
            select(CheckoutSession.order_payload).where(CheckoutSession.id == session_id)
        ).scalar_one_or_none()
        if flagged
        else None
    )
    if payload:  # a session flagged before it was paid has no order to tell anyone about yet
        orders.enqueue_order_flagged(state, session_id, fast_json.loads(payload), reference, flag)
    return flagged


def mark_paid(
    state: ShopState,
    session_id: str,
    reference: str | None,
    amount: int,
    from_status: Status | None = None,
    row: SessionRecord | None = None,
    now: int | None = None,
    commit: bool = True,
    quote: Quote | None = None,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Record a final payment and queue the order hand-off; False when it was already recorded.

    `row` is the session as the caller knows it (complete: as its claim wrote it); by
    default it is read. Either way _record_paid's condition re-checks the status. With
    commit=False the transaction is left open, marked KEEP_ON_ERROR: the ACP surface commits
    it with the stored response, and commits it even when anything after fails. `quote` is
    the price of `row`'s cart when the caller just made it (complete: the quote charged), and
    `details` that cart decoded.
    """
    payload = _payload(state, row or _read(session_id), reference, amount, quote, details)
    transaction.info()[PAYMENT_TAKEN] = True
    paid = _record_paid(state, session_id, reference, amount, payload, from_status, now)
    if not commit:
        transaction.info()[KEEP_ON_ERROR] = True
    else:
        transaction.commit()
    return paid


def _record_paid(
    state: ShopState,
    session_id: str,
    reference: str | None,
    amount: int,
    payload: Mapping[str, Any],
    from_status: Status | None,
    now: int | None = None,
) -> bool:
    """In the current transaction: complete the session and queue order.created.

    Only a session in `from_status` (None: any status but completed) is completed. The
    payload is encoded once: the session's order_payload and the order.created row hold the
    same text.
    """
    encoded = fast_json.dumps(payload)
    # Until this commits, the log is where the order would survive a failed write (below).
    transaction.info().setdefault(_UNSTORED, []).append((session_id, reference, encoded))
    values = {
        "p_id": session_id,
        "p_from": from_status,
        "p_completed": Status.COMPLETED,
        "p_order": order_id_for(session_id),
        "p_reference": reference,
        "p_provider": state.provider.name,
        "p_amount": amount,
        "p_now": clock.epoch() if now is None else now,
        "p_payload": encoded,
    }
    paid = write(_PAID_FROM if from_status else _PAID_UNLESS_COMPLETED, values) == 1
    if paid:
        orders.enqueue_order_created(state, session_id, payload, encoded)
        tally.add("completed")
        metrics.event(
            "session_completed",
            session_id=session_id,
            order_id=values["p_order"],
            provider=state.provider.name,
            amount=amount,
        )
    return paid


_UNSTORED = "shop.unstored_paid_orders"  # transaction.info(): paid orders not committed yet


@transaction.on_commit
def _paid_orders_stored() -> None:
    transaction.info().pop(_UNSTORED, None)


@transaction.on_rollback
def _paid_orders_lost() -> None:
    log_unstored_orders("the database refused its record (the transaction rolled back)")


def log_unstored_orders(reason: str) -> None:
    """Log, in full, every paid order of this unit of work whose record was not stored.

    The payment was taken: when the database cannot keep the order (a full disk, a removed
    or damaged file), the log is where it survives, whole, for the merchant to fulfil.
    """
    for session_id, reference, encoded in transaction.info().pop(_UNSTORED, ()):
        log.error(
            "PAID ORDER NOT STORED: session %s was paid (payment %s) but %s; fulfil it from "
            "this line and keep it: payload=%s",
            session_id,
            reference,
            reason,
            encoded,
        )


def _payload(
    state: ShopState,
    row: CheckoutSession | SessionRecord,
    reference: str | None,
    amount: int | None,
    quote: Quote | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the order payload; a failure must never keep a paid session from completing."""
    try:
        return order_payload(
            state,
            row,
            reference=reference,
            provider=state.provider.name,
            quote=quote,
            details=details,
        )
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
            state,
            row,
            reference=reference,
            provider=state.provider.name,
            amount=amount or 0,
            details=details,
        )
