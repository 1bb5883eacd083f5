"""Complete: claim the session, reserve stock, charge once, and record the outcome.

Each step is safe to retry: the session row is claimed with a conditional UPDATE, stock is
reserved in the same transaction, the provider is called outside any transaction with an
idempotency key, and the outcome is written with another conditional UPDATE.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, update

from shop import clock, fast_json, metrics
from shop.checkout import session_rows, stock, tally
from shop.checkout.model import OPEN, Message, SessionView, Status, order_id_for
from shop.checkout.outcomes import (
    _finish,
    _release,
    log_unstored_orders,
    mark_paid,
    refund_duplicate,
)
from shop.checkout.reading import (
    _assess,
    _current,
    _declined,
    _notice,
    _read,
    _view,
    check_owner,
)
from shop.checkout.session_rows import SessionRecord
from shop.checkout.sessions import _provider_unavailable, _require_open
from shop.errors import DatabaseUnavailableError, InvalidRequestError, ProviderError, ShopError
from shop.money import charge_amount
from shop.payments import ChargeRequest, ChargeResult, ChargeStatus, PaymentCredential
from shop.payments.declines import decline
from shop.payments.handlers import check_credential
from shop.state import ShopState
from shop.storage import health, one_of, transaction
from shop.storage.models import CheckoutSession
from shop.storage.transaction import write

log = logging.getLogger("shop.checkout")

_T = CheckoutSession.__table__
# payment_reference is cleared: until this attempt's answer stores its own, no provider
# event (a late failure of an earlier attempt) can match the session's current attempt.
_CLAIM_KEEPING_BUYER = (
    update(_T)
    .where(
        _T.c.id == bindparam("c_id"),
        one_of(_T.c.status, tuple(OPEN)),
        _T.c.cart == bindparam("c_seen_cart"),
    )
    .values(
        status=bindparam("c_status"),
        cart=bindparam("c_cart"),
        updated_at=bindparam("c_now"),
        notices="[]",
        stock_reserved=1,
        payment_reference=None,
    )
)
# The buyer columns are SET only with a new cart (an index entry is rewritten whenever its
# column is SET; see session_rows._UPDATE).
_CLAIM = _CLAIM_KEEPING_BUYER.values(
    buyer_email=bindparam("c_email"), buyer_phone=bindparam("c_phone")
)


@metrics.COMPLETE_SECONDS.time()
def complete_session(
    state: ShopState,
    session_id: str,
    credential: PaymentCredential,
    buyer: Mapping[str, Any] | None = None,
    *,
    commit: bool = True,
    owner: str | None = None,
    offered_handlers_only: bool = False,
    authentication: Mapping[str, Any] | None = None,
    before_write: Callable[[SessionView], None] | None = None,
) -> SessionView:
    """Reserve stock, charge once, and complete the session (or say why not).

    `before_write(view)`, when given, is called with the completed view before the payment's record
    is written (see sessions.create_session): the caller may render it outside the write lock.

    With commit=False a successful payment is recorded in a transaction left open for the
    caller (the ACP surface commits it with the stored response; see mark_paid). With
    `offered_handlers_only` (ACP) the credential must be for a payment handler the session
    advertised, in types that handler takes: else a 400 before any stock or money moves.
    """
    # Read outside the transaction; the claim below re-checks status and cart in its WHERE,
    # so the write lock is held only from the claim to the commit.
    row = _current(session_id)
    details = fast_json.loads(row.cart)
    check_owner(session_id, details, owner)
    if row.status == Status.IN_PROGRESS and unknown_attempt(row.payment_reference):
        return _resolve_unknown(state, row)  # learn what the lost attempt did; never charge
    if row.status in (Status.COMPLETED, Status.IN_PROGRESS, Status.EXPIRED, Status.CANCELED):
        _attempt("not_open")
    if row.status in (Status.COMPLETED, Status.IN_PROGRESS, Status.EXPIRED):
        return _view(state, row, details=details)  # already paid / paying / over: never again
    if row.status == Status.CANCELED:
        _require_open(row, "completed")
    health.require_writable()  # nothing is claimed or charged on a database that cannot keep it
    if offered_handlers_only:
        check_credential(state.provider.handlers(row.provider_order_id), credential)
    if authentication is not None and authentication["outcome"] not in AUTHENTICATED:
        return _authentication_failed(state, row, details, str(authentication["outcome"]))
    # A new attempt answers a pending 3-D Secure request: it is dropped from the cart.
    auth_pending = details.pop(AUTH_METADATA, None) is not None
    if auth_pending and authentication is None:
        # The spec's error_400_requires_3ds; a "canceled" or "abandoned" result frees the
        # session for another card.
        raise InvalidRequestError(
            "requires_3ds",
            "This checkout session requires issuer authentication. The request must include "
            "'authentication_result' as provided by the issuer authentication flow.",
            "$.authentication_result",
        )
    cart = row.cart  # unchanged without a buyer: the stored text, not encoded again
    if buyer is not None:
        details["buyer"] = dict(buyer)
    if buyer is not None or auth_pending:
        cart = fast_json.dumps(details)
    assessed = _assess(state, details)
    quote, _messages, _availability, ready = assessed
    if not ready:
        _attempt("not_ready")
        new = replace(row, cart=cart, status=Status.NOT_READY, updated_at=clock.epoch())
        written = session_rows.update_open(row, new, details)
        transaction.commit()
        return _view(state, new if written else _read(session_id))
    lines = [(line.item.id, line.quantity) for line in quote.lines]
    # The session as the claim writes it (the buyer columns kept in step with the cart).
    mine = replace(
        row,
        status=Status.IN_PROGRESS,
        cart=cart,
        updated_at=clock.epoch(),
        notices="[]",
        payment_reference=None,
    )
    email, phone = session_rows.buyer_columns(details)
    claimed = (
        write(
            _CLAIM_KEEPING_BUYER if cart == row.cart else _CLAIM,
            {
                "c_id": session_id,
                "c_seen_cart": row.cart,
                "c_status": mine.status,
                "c_cart": mine.cart,
                "c_now": mine.updated_at,
                "c_email": email,
                "c_phone": phone,
            },
        )
        == 1
    )
    short = stock.reserve_stock(state.catalog, lines) if claimed else None
    if not claimed or short is not None:
        transaction.rollback()
        _attempt("out_of_stock" if short is not None else "not_open")
        if short is not None:
            tally.add("out_of_stock")
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
    transaction.commit()
    try:
        health.require_writable()  # a payment is only taken when its record can be stored
    except DatabaseUnavailableError:
        with contextlib.suppress(Exception):  # the database may refuse this too; nothing charged
            _release(state, session_id, lines, "[]")
        raise
    request = ChargeRequest(
        session_id=session_id,
        amount=quote.total,
        currency=quote.currency,
        credential=credential,
        authentication=(authentication or {}).get("outcome_details"),
        description=f"{state.settings.store_name} checkout {session_id}",
        provider_order_id=provider_order_id,
    )
    try:
        result = state.provider.charge(request)
    except ProviderError as exc:
        if exc.outcome_unknown:
            # The provider may have charged: keep the stock and the session paying, remember
            # the attempt, and learn the outcome before anyone is told anything.
            _attempt("provider_error")
            _mark_unknown(state, session_id, request.idempotency_key)
            raise _outcome_unknown(exc) from exc
        reason = "provider_unavailable" if exc.retryable else "provider_error"
        _payment_failed(state, session_id, reason)
        _release(state, session_id, lines, "[]")
        raise _provider_unavailable(exc, paying=True) from exc
    except Exception:
        # An unexpected bug must not strand reserved stock: give it back, then let it surface.
        _release(state, session_id, lines, "[]")
        raise
    metrics.PROVIDER_LAST_ANSWER.labels(provider=state.provider.name).set(clock.epoch())
    if result.status == ChargeStatus.AUTHENTICATION_REQUIRED:
        if result.authentication_metadata is not None:
            return _ask_for_authentication(state, session_id, lines, result, details)
        result = _needs_authentication(result)
    if result.status == ChargeStatus.DECLINED:
        metrics.inc("shop_payment_declines_total", via="complete")
        _payment_failed(state, session_id, result.decline_code or "declined")
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
        _attempt("pending")
        _finish(
            session_id,
            Status.IN_PROGRESS,
            payment_reference=result.reference,
            payment_provider=state.provider.name,
        )
    else:
        # As mark_paid writes it when its condition holds (nothing else wrote in between),
        # described from the assessment that set the amount charged (no second pricing/read).
        done = _view(
            state,
            replace(
                mine,
                status=Status.COMPLETED,
                order_id=order_id_for(session_id),
                payment_reference=result.reference,
                payment_provider=state.provider.name,
                notices="[]",
                updated_at=clock.epoch(),
            ),
            assessed,
            details,
        )
        unanswerable: Exception | None = None
        if before_write is not None:
            try:
                before_write(done)
            except Exception as exc:  # the caller's bug must not cost the payment its record
                unanswerable = exc
        if _record_payment(state, session_id, result.reference, quote, mine, commit, details):
            metrics.inc("shop_checkouts_completed_total", via="complete")
            _attempt("completed")
            if unanswerable is not None:
                raise unanswerable  # recorded first; the answer fails as it would have
            return done
        if result.reference:
            _refund_if_duplicate(state, session_id, result.reference)
    return _view(state, _read(session_id))  # committed: read it as it is now


# --------------------------------------------------------- attempts whose outcome was lost

UNKNOWN = "unknown:"  # payment_reference of a paying session whose attempt's answer was lost


def unknown_attempt(reference: str | None) -> str | None:
    """Return the lost attempt's idempotency key when `reference` marks one, else None."""
    if reference and reference.startswith(UNKNOWN):
        return reference.removeprefix(UNKNOWN)
    return None


def _mark_unknown(state: ShopState, session_id: str, attempt: str) -> None:
    # Only the claim this call made (paying, no reference yet): a webhook that settled the
    # session meanwhile is never overwritten.
    transaction.execute(
        update(_T)
        .where(
            _T.c.id == session_id,
            _T.c.status == Status.IN_PROGRESS,
            _T.c.payment_reference.is_(None),
        )
        .values(
            payment_reference=UNKNOWN + attempt,
            payment_provider=state.provider.name,
            updated_at=clock.epoch(),
        )
    )
    transaction.commit()


def _outcome_unknown(exc: ProviderError | None) -> ShopError:
    if exc is not None:
        log.error("payment outcome unknown, the session stays paying: %s", exc)
    metrics.inc("shop_payment_outcome_unknown_total")
    return ShopError(
        503,
        "service_unavailable",
        "payment_outcome_unknown",
        "The payment provider has not confirmed whether this payment went through, so the "
        "session stays in progress and nothing more will be charged. Retry complete in a "
        "moment (any payment_data): the store looks the payment up before charging again.",
        headers={"Retry-After": "10"},
        replayable=False,
    )


def _resolve_unknown(state: ShopState, row: SessionRecord) -> SessionView:
    """Look up what a lost attempt did and record it; still unknown: a retryable 503."""
    session_id = row.id
    attempt = unknown_attempt(row.payment_reference)
    try:
        found = state.provider.find_payment(session_id, attempt) or state.provider.find_payment(
            session_id
        )
    except ProviderError as exc:
        raise _outcome_unknown(exc) from exc
    if found is None:
        raise _outcome_unknown(None)
    details = fast_json.loads(row.cart)
    quote = _assess(state, details)[0]
    lines = [(line.item.id, line.quantity) for line in quote.lines]
    marker = _T.c.payment_reference == row.payment_reference
    log.warning(
        "session %s: the lost payment attempt was found: %s %s",
        session_id,
        found.status,
        found.reference,
    )
    if found.status == ChargeStatus.SUCCEEDED:
        if mark_paid(state, session_id, found.reference, _paid_amount(quote), Status.IN_PROGRESS):
            metrics.inc("shop_checkouts_completed_total", via="complete")
    elif found.status == ChargeStatus.PENDING:
        transaction.execute(
            update(_T)
            .where(_T.c.id == session_id, _T.c.status == Status.IN_PROGRESS, marker)
            .values(payment_reference=found.reference, updated_at=clock.epoch())
        )
        transaction.commit()
    else:
        metrics.inc("shop_payment_declines_total", via="complete")
        _release(state, session_id, lines, _declined(found.message), marker)
    return _view(state, _read(session_id))


# --------------------------------------------------------- 3-D Secure (ACP 2026-04-17)

AUTH_METADATA = "authentication_metadata"  # in the cart JSON while authentication is pending
AUTHENTICATED = ("authenticated", "informational", "attempt_acknowledged")
_AUTH_FAILED = {
    "denied": "The card's issuer denied the 3-D Secure authentication",
    "rejected": "The card's issuer rejected the 3-D Secure authentication",
    "abandoned": "The 3-D Secure authentication was abandoned",
    "canceled": "The 3-D Secure authentication was canceled",
}


def _ask_for_authentication(
    state: ShopState,
    session_id: str,
    lines: list[tuple[str, int]],
    result: ChargeResult,
    details: Mapping[str, Any],
) -> SessionView:
    """Reopen the session waiting for the agent's 3-D Secure result (rendered as
    authentication_required with authentication_metadata); nothing was charged."""
    notice = _notice(
        Message(
            "error",
            "This card needs 3-D Secure authentication: authenticate the buyer with the "
            "authentication_metadata given, then complete again with authentication_result.",
            "requires_3ds",
            "$.authentication_result",
        )
    )
    _release(state, session_id, lines, notice)
    pending = fast_json.dumps({**details, AUTH_METADATA: dict(result.authentication_metadata)})
    transaction.execute(
        update(_T)
        .where(_T.c.id == session_id, _T.c.status == Status.READY)
        .values(cart=pending, updated_at=clock.epoch())
    )
    transaction.commit()
    log.info("session %s: the card needs 3-D Secure; asked the agent to authenticate", session_id)
    return _view(state, _read(session_id))


def _authentication_failed(
    state: ShopState, row: SessionRecord, details: dict[str, Any], outcome: str
) -> SessionView:
    """3-D Secure did not authenticate: charge nothing, keep the session payable."""
    details.pop(AUTH_METADATA, None)
    reason = _AUTH_FAILED.get(outcome, f"3-D Secure authentication did not succeed ({outcome})")
    notice = _notice(
        Message(
            "error",
            f"{reason}; nothing was charged. Please use a different card.",
            "requires_3ds",
            "$.authentication_result",
        )
    )
    transaction.execute(
        update(_T)
        .where(_T.c.id == row.id, one_of(_T.c.status, tuple(OPEN)))
        .values(cart=fast_json.dumps(details), notices=notice, updated_at=clock.epoch())
    )
    transaction.commit()
    _attempt("declined")
    return _view(state, _read(row.id))


def _needs_authentication(result: ChargeResult) -> ChargeResult:
    """3-D Secure the store cannot offer here: a requires_3ds decline that says why."""
    return decline("authentication_required", reference=result.reference)


def _paid_amount(quote: Any) -> int:
    """What a paid session records as paid: the total as the provider can charge it."""
    return charge_amount(quote.total, quote.currency)


def _refund_if_duplicate(state: ShopState, session_id: str, reference: str) -> None:
    """This attempt succeeded but another payment completed the session: give it back."""
    current = _read(session_id)
    if current.status == Status.COMPLETED and current.payment_reference not in (None, reference):
        refund_duplicate(state, session_id, reference, current.payment_reference)


def _attempt(outcome: str) -> None:
    metrics.COMPLETE_ATTEMPTS.labels(outcome=outcome).inc()


def _payment_failed(state: ShopState, session_id: str, reason: str) -> None:
    """Count a failed payment (in the transaction the caller commits) and log the event."""
    provider = state.provider.name
    reason = tally.reason_name(reason)
    if reason.startswith("provider_"):
        metrics.PROVIDER_LAST_ERROR.labels(provider=provider).set(clock.epoch())
        _attempt("provider_error")
    else:
        _attempt("declined")
    metrics.PAYMENT_FAILURES.labels(provider=provider, reason=reason).inc()
    tally.add(f"payment_failed.{reason}")
    metrics.event("payment_failed", session_id=session_id, provider=provider, reason=reason)


def _record_payment(
    state: ShopState,
    session_id: str,
    reference: str | None,
    quote: Any,
    mine: Any,
    commit: bool,
    details: Any,
) -> bool:
    """Record a payment just taken; True when this call completed the session.

    When the database refuses the record (a full disk, a removed or damaged file), the
    payment is still what it is: the order goes to the log in full and the answer is
    `completed`, never an error or a session that looks unpaid.
    """
    try:
        return mark_paid(
            state,
            session_id,
            reference,
            _paid_amount(quote),
            from_status=Status.IN_PROGRESS,
            row=mine,
            now=clock.epoch(),
            commit=commit,
            quote=quote,  # the price charged: the order payload is not priced a second time
            details=details,  # and its cart is not decoded a second time
        )
    except Exception as exc:
        with contextlib.suppress(Exception):
            transaction.rollback()  # logs the order in full (outcomes._paid_orders_lost)
        log_unstored_orders(f"the database refused its record ({exc})")
        health.failure(exc)  # noted for /healthz, with its sentence in the log
        return True
