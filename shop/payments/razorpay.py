"""The Razorpay provider: a server-created order per payable total, verified and captured payments.

The buyer pays the order in Razorpay Checkout; the agent hands us the three values Checkout
returns. We verify their signature, fetch the payment, check it paid THIS order for THIS
amount, capture it if only authorized, and report the payment id. `RAZORPAY_API_BASE`
points the client at another host (the tests' fake).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import razorpay
import requests

from shop.errors import ConfigError, ProviderError
from shop.money import to_provider_units
from shop.payments import ChargeRequest, ChargeResult, ChargeStatus, PaymentEvent
from shop.payments.declines import decline
from shop.payments.razorpay_events import parse_event
from shop.security import SignatureError, verify_hex

log = logging.getLogger("shop.payments.razorpay")

TIMEOUT = (5, 25)  # connect, read: below gunicorn's default 30 s worker timeout
_AUTH_FAILED = "Authentication failed"  # Razorpay's 401 description for a wrong key pair
CREDENTIAL_FIELDS = ("razorpay_payment_id", "razorpay_order_id", "razorpay_signature")
# ValueError: a non-JSON answer (the library calls response.json() on every reply).
_FAILURES = (
    razorpay.errors.BadRequestError,
    razorpay.errors.GatewayError,
    razorpay.errors.ServerError,
    requests.RequestException,
    ValueError,
)


class RazorpayProvider:
    """Take payments through Razorpay orders and Razorpay Checkout."""

    name = "razorpay"
    prepares_orders = True

    def __init__(self, settings: Any) -> None:
        key_id, key_secret = (
            settings.secret("RAZORPAY_KEY_ID"),
            settings.secret("RAZORPAY_KEY_SECRET"),
        )
        if not key_id or not key_secret:
            raise ConfigError(
                "paymentProvider is 'razorpay' but RAZORPAY_KEY_ID or "
                "RAZORPAY_KEY_SECRET is not set; export both before starting."
            )
        self._key_id, self._key_secret = key_id, key_secret
        self._webhook_secret = settings.secret("RAZORPAY_WEBHOOK_SECRET")
        self._currency = settings.currency.upper()
        base = settings.env.get("RAZORPAY_API_BASE")
        options = {"base_url": base.rstrip("/")} if base else {}
        self._client = razorpay.Client(auth=(key_id, key_secret), **options)
        # Retries off (also the library's default), said out loud: a retried capture or order
        # must be the checkout's decision, and a retry would outlive the worker's timeout.
        self._client.enable_retry(False)

    @property
    def test_mode(self) -> bool:
        """True when RAZORPAY_KEY_ID is a test key (rzp_test_): no real money moves."""
        return self._key_id.startswith("rzp_test_")

    def prepare(
        self, session_id: str, amount: int, currency: str, current_reference: str | None
    ) -> str | None:
        """Create a Razorpay order for this total and return its id (orders cannot change)."""
        data = {
            "amount": to_provider_units(amount, currency, "razorpay"),
            "currency": currency.upper(),
            "receipt": session_id[:40],  # Razorpay caps receipts at 40 characters
            "notes": {"checkout_session_id": session_id},
        }
        order = self._call("create an order", self._client.order.create, data)
        if current_reference:
            log.info(
                "session %s: Razorpay order %s replaces %s",
                session_id,
                order["id"],
                current_reference,
            )
        return str(order["id"])

    def handlers(self, provider_order_id: str | None) -> list[dict[str, Any]]:
        """Advertise the seller-backed Razorpay Checkout handler for this session's order."""
        config: dict[str, Any] = {
            "psp": "razorpay",
            "key_id": self._key_id,
            "currency": self._currency,
            "environment": "test" if self._key_id.startswith("rzp_test_") else "production",
            "credential_fields": list(CREDENTIAL_FIELDS),
        }
        if provider_order_id:
            config["order_id"] = provider_order_id
        return [
            {
                "id": "razorpay",
                "name": "dev.acp.seller_backed.razorpay",
                "display_name": "Razorpay (cards, UPI, netbanking, wallets)",
                "version": "2026-04-17",
                "spec": "https://razorpay.com/docs/payments/payment-gateway/web-integration/standard/",
                "requires_delegate_payment": False,
                "requires_pci_compliance": False,
                "psp": "razorpay",
                "config_schema": "https://razorpay.com/docs/api/orders/",
                "instrument_schemas": [
                    "https://razorpay.com/docs/payments/payment-gateway/"
                    "web-integration/standard/build-integration/"
                ],
                "config": config,
            }
        ]

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Verify, check and capture the Razorpay payment the buyer made for this order."""
        fields = _credential_fields(request.credential.fields, request.credential.token)
        if fields is None:
            return decline("unverified_payment")
        payment_id, order_id, signature = (fields[name] for name in CREDENTIAL_FIELDS)
        if request.provider_order_id and order_id != request.provider_order_id:
            log.warning(
                "session %s: Razorpay payment %s paid another order", request.session_id, payment_id
            )
            return decline("unverified_payment")
        try:
            verify_hex(self._key_secret, f"{order_id}|{payment_id}", signature)
        except SignatureError as exc:
            log.warning(
                "session %s: Razorpay payment signature rejected: %s", request.session_id, exc
            )
            return decline("unverified_payment")
        payment = self._call("fetch the payment", self._client.payment.fetch, payment_id)
        if payment.get("order_id") != order_id:
            return decline("unverified_payment", reference=payment_id)
        amount = to_provider_units(request.amount, request.currency, "razorpay")
        if (
            int(payment.get("amount", -1)) != amount
            or str(payment.get("currency", "")).upper() != request.currency.upper()
        ):
            paid = f"{payment.get('amount')} {payment.get('currency')}"
            log.error(
                "session %s: Razorpay payment %s is %s, not %s %s",
                request.session_id,
                payment_id,
                paid,
                request.amount,
                request.currency,
            )
            return decline("amount_mismatch", reference=payment_id)
        status = payment.get("status")
        if status == "authorized":
            payment = self._capture(payment_id, request)
            status = payment.get("status")
        if status == "captured":
            return ChargeResult(ChargeStatus.SUCCEEDED, payment_id)
        if status == "failed":
            reason = str(payment.get("error_reason") or "").lower() or None
            # Razorpay writes error_description for buyers; it replaces our sentence.
            return decline(
                "payment_declined", reason, payment_id, payment.get("error_description") or None
            )
        return decline("payment_incomplete", reference=payment_id)

    def _capture(self, payment_id: str, request: ChargeRequest) -> dict[str, Any]:
        try:
            return self._call(
                "capture the payment",
                self._client.payment.capture,
                payment_id,
                to_provider_units(request.amount, request.currency, "razorpay"),
                {"currency": request.currency.upper()},
            )
        except ProviderError:
            # A concurrent capture (or the webhook's) may have won: trust the payment's state.
            payment = self._call("fetch the payment", self._client.payment.fetch, payment_id)
            if payment.get("status") != "captured":
                raise
            return payment

    def _call(self, what: str, method: Any, *args: Any) -> dict[str, Any]:
        try:
            answer = method(*args, timeout=TIMEOUT)
        except _FAILURES as exc:
            if isinstance(exc, razorpay.errors.BadRequestError) and _AUTH_FAILED in str(exc):
                raise ProviderError(
                    f"Razorpay refused the keys when asked to {what} ({exc}): "
                    "RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET are not a valid pair; copy both "
                    "from Dashboard → Account & Settings → API Keys (test keys: rzp_test_…)",
                    retryable=False,
                    setup=True,
                ) from exc
            raise ProviderError(
                f"Razorpay could not {what}: {type(exc).__name__}: {exc}",
                retryable=not isinstance(exc, razorpay.errors.BadRequestError),
            ) from exc
        if not isinstance(answer, dict) or "id" not in answer:
            raise ProviderError(f"Razorpay answered an unexpected body when asked to {what}")
        return answer

    def find_payment(self, session_id: str, attempt: str | None = None) -> ChargeResult | None:
        """Return None: the buyer pays in Razorpay Checkout and a lost capture is fetched again
        in charge(), so no attempt of ours is ever left unknown."""
        return None

    def refund(self, reference: str, session_id: str, reason: str = "duplicate") -> str:
        """Refund a whole captured payment; a payment already fully refunded counts as done."""
        try:
            refund = self._call(
                "refund the payment",
                self._client.payment.refund,
                reference,
                {"notes": {"checkout_session_id": session_id, "shop_refund": reason}},
            )
        except ProviderError:
            payment = self._call("fetch the payment", self._client.payment.fetch, reference)
            if payment.get("amount_refunded") != payment.get("amount"):
                raise
            return "already_refunded"
        return str(refund["id"])

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Verify X-Razorpay-Signature (hex HMAC of the raw body), then reduce the event."""
        return parse_event(raw_body, headers, self._webhook_secret, self._fetch_order)

    def _fetch_order(self, order_id: str) -> dict[str, Any]:
        return self._call("fetch the order", self._client.order.fetch, order_id)


def _credential_fields(fields: Mapping[str, Any], token: str) -> dict[str, str] | None:
    """Find the three Checkout values in the credential object or a JSON-encoded token."""
    found = {k: fields.get(k) for k in CREDENTIAL_FIELDS}
    if not all(found.values()) and token.lstrip().startswith("{"):
        try:
            decoded = json.loads(token)
        except ValueError:
            return None
        if isinstance(decoded, dict):
            found = {k: decoded.get(k) for k in CREDENTIAL_FIELDS}
    if not all(isinstance(v, str) and v for v in found.values()):
        return None
    return {k: str(v) for k, v in found.items()}
