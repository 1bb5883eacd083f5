"""Every Stripe request this store sends, built for the API version it goes out under.

Two versions, never mixed in one call:
- card tokens (tok_…) and PaymentMethods (pm_…) go out under the pinned library's own
  version (`stripe.api_version`, 2026-10-28.endive for stripe==16.1.0) with parameters its
  typed params declare (`stripe.params.PaymentIntentCreateParams` …);
- Shared Payment Tokens go out under the preview version that defines
  `payment_method_data[shared_payment_granted_token]` (STRIPE_API_VERSION, default
  2026-04-22.preview; Stripe changelog 2026-04-22 "Adds the Shared Payment Granted Token").

`payment_method_types` is refused from 2026-08-26 (preview) / 2026-09-30.endive with
`payment_method_types_no_longer_supported`; its replacement `allowed_payment_method_types`
exists from 2026-07-29 (Stripe changelog entries of those dates). Limiting the types to
`card` also keeps redirect-based methods out, so confirming needs no `return_url`.
A tok_ token becomes a PaymentMethod first (`POST /v1/payment_methods` with card[token]:
PaymentMethodCreateParamsCard.token, "for backwards compatibility"), since
`payment_method_data` declares no `card` on PaymentIntent create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

CARD_API_VERSION: str = stripe.api_version
DEFAULT_SPT_API_VERSION = "2026-04-22.preview"
ALLOWED_TYPES_SINCE = "2026-07-29"  # allowed_payment_method_types added (dahlia)
# ACP AuthenticationResult.outcome_details -> Stripe's
# PaymentIntentCreateParamsPaymentMethodOptionsCardThreeDSecure
_THREE_DS_FIELDS = {
    "three_ds_cryptogram": "cryptogram",
    "electronic_commerce_indicator": "electronic_commerce_indicator",
    "transaction_id": "transaction_id",
    "version": "version",
}


def version_date(version: str) -> str:
    """Return the date part of an API version ('2026-04-22.preview' -> '2026-04-22')."""
    return version.split(".", 1)[0]


def method_types(version: str) -> dict[str, list[str]]:
    """Limit the PaymentIntent to cards with the parameter `version` has."""
    if version_date(version) >= ALLOWED_TYPES_SINCE:
        return {"allowed_payment_method_types": ["card"]}
    return {"payment_method_types": ["card"]}


def payment_method_from_token(token: str) -> dict[str, Any]:
    """Return PaymentMethod create params turning a card token (tok_…) into a PaymentMethod."""
    return {"type": "card", "card": {"token": token}}


def payment_intent(
    *,
    amount: int,
    currency: str,
    session_id: str,
    attempt: str,
    version: str,
    description: str = "",
    payment_method: str | None = None,
    shared_payment_token: str | None = None,
    authentication: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return PaymentIntent create params: one confirmed card payment for this attempt."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "confirm": True,
        "metadata": {"checkout_session_id": session_id, "shop_attempt": attempt},
        **method_types(version),
    }
    if description:
        params["description"] = description
    if shared_payment_token:
        params["payment_method_data"] = {"shared_payment_granted_token": shared_payment_token}
    else:
        params["payment_method"] = payment_method
    if authentication:
        params["payment_method_options"] = {
            "card": {"three_d_secure": three_d_secure(authentication)}
        }
    return params


def three_d_secure(details: Mapping[str, Any]) -> dict[str, str]:
    """Map ACP's authentication outcome_details to Stripe's 3DS-performed-elsewhere fields."""
    return {
        ours: str(details[theirs])
        for theirs, ours in _THREE_DS_FIELDS.items()
        if details.get(theirs)
    }


def search_by_session(session_id: str) -> dict[str, Any]:
    """Return PaymentIntent search params finding every attempt for a checkout session."""
    quoted = session_id.replace("\\", "\\\\").replace("'", "\\'")
    return {"query": f"metadata['checkout_session_id']:'{quoted}'", "limit": 100}


def refund(payment_intent_id: str, session_id: str, reason: str = "duplicate") -> dict[str, Any]:
    """Return Refund create params giving back a whole PaymentIntent."""
    return {
        "payment_intent": payment_intent_id,
        "reason": reason,
        "metadata": {"checkout_session_id": session_id, "shop_refund": reason},
    }
