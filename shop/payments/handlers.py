"""Which payment_data a session's advertised handlers take (checked before anything is charged).

A handler is known by its `name`; this table says which instrument and credential types each
handler this store advertises accepts. A handler name not in the table takes any types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shop.errors import InvalidRequestError
from shop.payments import PaymentCredential

# handler name -> (instrument types, credential types)
ACCEPTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # ACP's delegated tokenized card: a Stripe shared payment token (spt); "card" names a
    # card or payment-method token the PSP issued (card_…, pm_…).
    "dev.acp.tokenized.card": (frozenset({"card"}), frozenset({"spt", "card"})),
    "dev.acp.seller_backed.razorpay": (frozenset({"razorpay"}), frozenset({"razorpay"})),
}
# The legacy {token, provider} payment_data (ACP before 2026-01-30) names a PSP; a handler's
# psp takes these provider names. The offline test provider reads Stripe's test tokens.
_PROVIDER_NAMES = {"test": frozenset({"test", "stripe"})}

_PAYMENT = "$.payment_data"


def _ids(handlers: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"'{h['id']}'" for h in handlers) or "none"


def check_credential(handlers: Sequence[Mapping[str, Any]], credential: PaymentCredential) -> None:
    """Raise a 400 unless the credential is for a handler the session offered, in its types."""
    if credential.handler_id is None:
        _check_legacy(handlers, credential)
        return
    handler = next((h for h in handlers if h.get("id") == credential.handler_id), None)
    if handler is None:
        raise InvalidRequestError(
            "invalid_payment_handler",
            f"{_PAYMENT}.handler_id '{credential.handler_id}' is not a payment handler this "
            f"session offered; use one of {_ids(handlers)} "
            "(capabilities.payment.handlers[].id).",
            f"{_PAYMENT}.handler_id",
        )
    instruments, credentials = ACCEPTS.get(handler.get("name", ""), (None, None))
    if instruments is not None and credential.instrument_type not in instruments:
        raise InvalidRequestError(
            "unsupported_instrument",
            f"Payment handler '{handler['id']}' takes instrument type "
            f"{' or '.join(sorted(instruments))}, not '{credential.instrument_type}'.",
            f"{_PAYMENT}.instrument.type",
        )
    if credentials is not None and credential.credential_type not in credentials:
        raise InvalidRequestError(
            "unsupported_credential",
            f"Payment handler '{handler['id']}' takes credential type "
            f"{' or '.join(sorted(credentials))}, not '{credential.credential_type}'.",
            f"{_PAYMENT}.instrument.credential.type",
        )


def _check_legacy(handlers: Sequence[Mapping[str, Any]], credential: PaymentCredential) -> None:
    if credential.provider is None:
        raise InvalidRequestError(
            "missing_field",
            f"{_PAYMENT}.handler_id is required: name one of the payment handlers this session "
            f"offered ({_ids(handlers)}).",
            f"{_PAYMENT}.handler_id",
        )
    accepted = set()
    for handler in handlers:
        psp = str(handler.get("psp", ""))
        accepted |= _PROVIDER_NAMES.get(psp, frozenset({psp}))
    if credential.provider not in accepted:
        raise InvalidRequestError(
            "unsupported_payment_provider",
            f"{_PAYMENT}.provider '{credential.provider}' is not this store's payment provider; "
            f"send {' or '.join(sorted(accepted))}.",
            f"{_PAYMENT}.provider",
        )
