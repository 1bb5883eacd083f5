"""Forter agentic orchestration on the checkout domain: the sticky reference_id -> session map,
cart upserts, and order placement with the totals check and the retry semantics.

Speaks SessionInput / SessionView and integer minor units like the rest of the domain; the
Forter HTTP shapes (envelope, decimals, status codes) live in shop/api/forter.py. One
reference_id is one checkout session: the unique forter_reference_id column is claimed with a
conditional UPDATE whose unique index decides a race, so two concurrent cart.created events
for one reference never open two sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from shop import checkout, clock
from shop.checkout import SessionInput, SessionView, Status, buyers
from shop.errors import InvalidRequestError, ProcessingError, ShopError
from shop.payments import PaymentCredential
from shop.pricing.quotes import Quote, fulfillment_choices
from shop.state import ShopState
from shop.storage import rows_of, transaction
from shop.storage.models import CheckoutSession

TOTAL_NAMES = ("subtotal", "discount", "shipping", "tax", "total")


def totals_of(quote: Quote) -> dict[str, int]:
    """Return a quote's Forter totals in minor units: subtotal - discount + shipping + tax."""
    return {
        "subtotal": quote.items_base,
        "discount": quote.discount,
        "shipping": quote.fulfillment,
        "tax": quote.tax,
        "total": quote.total,
    }


def _find(reference_id: str) -> Any:
    """The session holding a Forter reference (a row with its columns as attributes), or None."""
    return transaction.execute(
        rows_of(CheckoutSession).where(CheckoutSession.forter_reference_id == reference_id)
    ).one_or_none()


def _bind(session_id: str, reference_id: str) -> bool:
    """Give a fresh session the reference; False when another request claimed it first."""
    try:
        bound = (
            transaction.execute(
                update(CheckoutSession)
                .where(
                    CheckoutSession.id == session_id, CheckoutSession.forter_reference_id.is_(None)
                )
                .values(forter_reference_id=reference_id)
            ).rowcount
            == 1
        )
        transaction.commit()
        return bound
    except IntegrityError:
        transaction.rollback()
        return False


def _unbind(session_id: str, reference_id: str) -> None:
    """Free a reference held by an expired or canceled session so a new cart can take it."""
    transaction.execute(
        update(CheckoutSession)
        .where(
            CheckoutSession.id == session_id, CheckoutSession.forter_reference_id == reference_id
        )
        .values(forter_reference_id=None)
    )
    transaction.commit()


def _closed(reference_id: str, view: SessionView) -> ShopError:
    if view.status == Status.COMPLETED:
        said = f"already became order '{view.order_id}'"
    else:
        said = "is being paid for right now"
    return ShopError(
        409,
        "invalid_request",
        "cart_closed",
        f"The cart for reference_id '{reference_id}' {said} and cannot change; "
        "start a new cart with a new reference_id.",
    )


def _keep_street_address(view: SessionView, change: SessionInput) -> SessionInput:
    """Drop a region-only address (from region_id/country_id) when the cart has a street one."""
    new = (change.fulfillment_details or {}).get("address") or {}
    old = (view.details.get("fulfillment_details") or {}).get("address") or {}
    if change.fulfillment_details is not None and not new.get("line_one") and old.get("line_one"):
        return replace(change, fulfillment_details=None)
    return change


def check_shipping_id(state: ShopState, change: SessionInput, view: SessionView | None) -> None:
    """Refuse a shipping_id the cart does not offer, before anything changes.

    The answer must never show another option's price as the one the orchestrator chose.
    """
    if change.option_id is None:
        return
    if change.lines is not None:
        shippable = any(not state.catalog.items[line.item_id].digital for line in change.lines)
    elif view is not None:
        shippable = view.quote.shippable
    else:
        return  # no items at all: the domain refuses the cart for that
    offered = [o.id for o in fulfillment_choices(state.settings, shippable, clock.now())]
    if change.option_id not in offered:
        raise InvalidRequestError(
            "invalid_request",
            f"recipient.shipping_id '{change.option_id}' is not a shipping "
            f"option for this cart; send one of {', '.join(offered)} (the cart answer's "
            "shipping_options[].id).",
            "recipient.shipping_id",
        )


def upsert_cart(state: ShopState, reference_id: str, change: SessionInput) -> SessionView:
    """Create the reference's session, or update it (cart.created and cart.updated alike)."""
    for _attempt in range(3):
        row = _find(reference_id)
        if row is not None:
            view = checkout.get_session(state, row.id)
            if view.status in checkout.OPEN:
                check_shipping_id(state, change, view)
                return checkout.update_session(state, row.id, _keep_street_address(view, change))
            if view.status in (Status.EXPIRED, Status.CANCELED):
                _unbind(row.id, reference_id)  # a new cart under the same reference
                continue
            raise _closed(reference_id, view)
        check_shipping_id(state, change, None)
        view = checkout.create_session(state, change)
        if _bind(view.id, reference_id):
            return view
        # Lost a race to a concurrent event for this reference: drop ours (it holds no
        # stock and was never shown to anyone) and update the winner instead.
        transaction.execute(delete(CheckoutSession).where(CheckoutSession.id == view.id))
        transaction.commit()
    raise ProcessingError(
        "reference_contention",
        f"reference_id '{reference_id}' is being "
        "changed by several requests at once; retry in a moment.",
        status=503,
    )


def cart_view(state: ShopState, reference_id: str) -> SessionView | None:
    """Return the reference's session as it stands now, or None when there is none."""
    row = _find(reference_id)
    return None if row is None else checkout.get_session(state, row.id)


def _has_changes(change: SessionInput) -> bool:
    return any(
        value is not None
        for value in (
            change.lines,
            change.buyer,
            change.fulfillment_details,
            change.option_id,
            change.coupon_codes,
            change.order_notes,
            change.currency,
        )
    )


def check_totals(reference_id: str, quote: Quote, expected: Mapping[str, int]) -> None:
    """Raise totals_mismatch unless every total the orchestrator sent equals ours."""
    ours = totals_of(quote)
    wrong = [name for name in TOTAL_NAMES if name in expected and expected[name] != ours[name]]
    if wrong:
        detail = ", ".join(
            f"{name} is {quote.display(ours[name])} here but "
            f"{quote.display(expected[name])} in the request"
            for name in wrong
        )
        raise ShopError(
            409,
            "invalid_request",
            "totals_mismatch",
            f"The totals for reference_id '{reference_id}' changed since the cart "
            f"was priced: {detail}. Send cart.updated to re-price, then retry.",
        )


def place_order(
    state: ShopState,
    reference_id: str,
    change: SessionInput,
    expected: Mapping[str, int],
    credential: PaymentCredential,
) -> SessionView:
    """Check the totals, then complete the reference's session through the domain.

    A repeated order.created for a reference whose session is completed (or still being
    paid) returns that session untouched: same order id, nothing charged again.
    """
    view = cart_view(state, reference_id)
    if view is not None and view.status in (Status.COMPLETED, Status.IN_PROGRESS):
        return view
    if view is None or view.status in (Status.EXPIRED, Status.CANCELED):
        if change.lines is None:
            said = "has expired" if view is not None else "does not exist"
            raise ShopError(
                409 if view is not None else 404,
                "invalid_request",
                "cart_not_found",
                f"The cart for reference_id '{reference_id}' {said}; send "
                "cart.created (or include items in order.created).",
            )
        view = upsert_cart(state, reference_id, change)
    elif _has_changes(change):
        check_shipping_id(state, change, view)
        view = checkout.update_session(state, view.id, _keep_street_address(view, change))
    check_totals(reference_id, view.quote, expected)
    address = (view.details.get("fulfillment_details") or {}).get("address") or {}
    if view.quote.shippable and not str(address.get("line_one") or "").strip():
        raise InvalidRequestError(
            "invalid_request",
            f"The cart for reference_id '{reference_id}' holds physical "
            "items but no street address to ship to; send recipient.address with address1, "
            "city, region_id, postal_code and country_id.",
        )
    return checkout.complete_session(state, view.id, credential)


def account_status(
    state: ShopState, email: str | None, phone: str | None, key: str
) -> tuple[str, str | None]:
    """Return (blocked | active | not_found, account_id) for a buyer's email and phone.

    blockedBuyers wins; `active` is a buyer of a checkout session the store still holds, with
    a stable pseudonymous account id keyed by `key`.
    """
    given = {c for c in (buyers.normal_email(email), buyers.normal_phone(phone)) if c}
    blocked = {
        buyers.normal_email(b) or buyers.normal_phone(b) or b for b in state.settings.blocked_buyers
    }
    if given & blocked:
        return "blocked", None
    found = buyers.find_returning(email, phone)
    if found is None:
        return "not_found", None
    return "active", buyers.account_id(key, *found)
