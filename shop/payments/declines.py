"""Decline codes -> the sentences a buyer reads, for every provider (one table, one wording).

Card codes are Stripe's vocabulary, which the other providers borrow; the seller-backed codes
cover payments the buyer made on the provider's own page (Razorpay Checkout). The checkout shows
`message` to the buyer through the agent, so every sentence says what to do next;
`decline_code` is the short code we report (card_declined, incorrect_cvc, requires_3ds…).
"""

from __future__ import annotations

from shop.payments import ChargeResult, ChargeStatus

_ANOTHER_CARD = "Please use a different card."
_OR_ANOTHER = "use a different card."
_CHECK_IT = f"Please check it or {_OR_ANOTHER}"
_PAY_AGAIN = "Please pay again in Razorpay Checkout"
_DECLINE_MESSAGES = {
    "card_declined": f"Your card was declined. {_ANOTHER_CARD}",
    "insufficient_funds": f"Your card has insufficient funds. {_ANOTHER_CARD}",
    "expired_card": f"Your card has expired. {_ANOTHER_CARD}",
    "incorrect_cvc": f"The card's security code (CVC) is incorrect. {_CHECK_IT}",
    "incorrect_number": f"The card number is incorrect. {_CHECK_IT}",
    "invalid_expiry_month": f"The card's expiration date is invalid. {_CHECK_IT}",
    "invalid_expiry_year": f"The card's expiration date is invalid. {_CHECK_IT}",
    "processing_error": f"The card could not be processed. Please try again or {_OR_ANOTHER}",
    "requires_3ds": (
        "This card needs 3-D Secure authentication, which this store does not support yet. "
        + _ANOTHER_CARD
    ),
    "invalid": (
        "This payment credential was not accepted (it may have expired or already been used). "
        "Please use a different payment method."
    ),
    # Seller-backed: the buyer paid on Razorpay's page and hands us its result.
    "unverified_payment": (
        "The Razorpay payment details could not be verified for this checkout; nothing was "
        f"charged. {_PAY_AGAIN}."
    ),
    "amount_mismatch": (
        "The Razorpay payment does not match this checkout's total or currency; nothing was "
        f"captured. {_PAY_AGAIN}."
    ),
    "payment_declined": "Your payment was declined. Please try a different payment method.",
    "payment_incomplete": (
        f"The Razorpay payment was not completed. {_PAY_AGAIN} or try a different payment method."
    ),
}
_AUTHENTICATION_CODES = {"authentication_required", "card_not_enrolled_in_3ds"}


def decline(
    code: str | None,
    decline_code: str | None = None,
    reference: str | None = None,
    message: str | None = None,
) -> ChargeResult:
    """Return a DECLINED result with a code we advertise and a sentence a buyer understands.

    `message` replaces the sentence when the provider wrote one for buyers (Razorpay's
    error_description); the code is still ours.
    """
    # Unlisted codes (lost_card, stolen_card, fraudulent …) become a plain card_declined:
    # Stripe advises sellers not to tell buyers why a card was flagged.
    if code in _AUTHENTICATION_CODES or decline_code in _AUTHENTICATION_CODES:
        ours = "requires_3ds"
    elif decline_code in _DECLINE_MESSAGES:
        ours = str(decline_code)
    elif code in _DECLINE_MESSAGES:
        ours = str(code)
    else:
        ours = "card_declined"
    return ChargeResult(ChargeStatus.DECLINED, reference, ours, message or _DECLINE_MESSAGES[ours])
