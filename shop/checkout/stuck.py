"""Payments that never finish: a worker that died mid-charge, a payment never settled."""

from __future__ import annotations

import logging

from sqlalchemy import or_

from shop import clock, fast_json
from shop.checkout.model import Status
from shop.checkout.outcomes import _release
from shop.checkout.reading import _cart_lines, _declined
from shop.state import ShopState
from shop.storage import rows_of, transaction
from shop.storage.models import CheckoutSession

log = logging.getLogger("shop.checkout")


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
            # No reference yet, or an attempt whose answer was lost (shop/checkout/paying.py).
            or_(
                CheckoutSession.payment_reference.is_(None),
                CheckoutSession.payment_reference.like("unknown:%"),
            ),
            CheckoutSession.updated_at < now - STALLED_CLAIM_SECONDS,
            "STALLED PAYMENT: the worker paying session %s stopped before the provider "
            "answered; its stock is given back and the buyer may pay again — if the provider "
            "did charge, its webhook completes the order",
        ),
        (
            CheckoutSession.payment_reference.is_not(None),
            CheckoutSession.payment_reference.not_like("unknown:%"),
            CheckoutSession.updated_at < now - UNSETTLED_PAYMENT_SECONDS,
            "PAYMENT NEVER SETTLED: session %s (payment %s) waited 7 days for its provider's "
            "webhook; its stock is given back — look the payment up in the provider's dashboard",
        ),
    )
    reopened = []
    for *conditions, warning in stuck:
        rows = transaction.execute(
            rows_of(CheckoutSession).where(
                CheckoutSession.status == Status.IN_PROGRESS, *conditions
            )
        ).all()
        for row in rows:
            session_id, reference = row.id, row.payment_reference
            lines = _cart_lines(fast_json.loads(row.cart))
            if _release(
                state,
                session_id,
                lines,
                _declined(
                    "The last payment attempt did not finish; nothing is known to have been "
                    "charged. Please complete the checkout again."
                ),
                *conditions,
            ):
                shown = [reference] if reference and not reference.startswith("unknown:") else []
                log.error(warning, session_id, *shown)
                reopened.append(session_id)
    transaction.commit()
    return reopened
