"""RazorpayProvider through the real `razorpay` library against the fake PSP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shop.errors import ProviderError
from shop.payments import (
    ChargeRequest,
    ChargeStatus,
    EventKind,
    PaymentCredential,
    WebhookPayloadError,
    WebhookSignatureError,
)
from shop.payments.declines import decline
from shop.payments.razorpay import RazorpayProvider
from tests.fake_psp import (
    RAZORPAY_KEY_ID,
    RAZORPAY_KEY_SECRET,
    RAZORPAY_WEBHOOK_SECRET,
    FakePSP,
    provider_settings,
)

SPEC = Path(__file__).resolve().parents[1] / "shop" / "spec" / "acp" / "2026-04-17"
SESSION = "cs_0123456789abcdef01234567"
AMOUNT = 49_900  # ₹499.00 in paise


@pytest.fixture
def provider(fake_psp: FakePSP, tmp_path: Path) -> RazorpayProvider:
    return RazorpayProvider(provider_settings(fake_psp, "razorpay", tmp_path))


@pytest.fixture
def order_id(provider: RazorpayProvider) -> str:
    order = provider.prepare(SESSION, AMOUNT, "inr", None)
    assert order is not None
    return order


def checkout_signature(order_id: str, payment_id: str, secret: str = RAZORPAY_KEY_SECRET) -> str:
    """What Razorpay Checkout hands the buyer: hex HMAC-SHA256(key_secret, 'order|payment')."""
    return hmac.new(
        secret.encode(), f"{order_id}|{payment_id}".encode(), hashlib.sha256
    ).hexdigest()


def charge_request(
    order_id: str,
    payment_id: str,
    signature: str | None = None,
    amount: int = AMOUNT,
    as_token: bool = False,
    session_order: str | None = "same",
) -> ChargeRequest:
    fields = {
        "razorpay_payment_id": payment_id,
        "razorpay_order_id": order_id,
        "razorpay_signature": signature or checkout_signature(order_id, payment_id),
    }
    credential = (
        PaymentCredential(token=json.dumps(fields))
        if as_token
        else PaymentCredential(token=payment_id, fields={"type": "razorpay", **fields})
    )
    return ChargeRequest(
        session_id=SESSION,
        amount=amount,
        currency="inr",
        credential=credential,
        provider_order_id=order_id if session_order == "same" else session_order,
    )


def test_prepare_creates_an_order_for_the_session(fake_psp: FakePSP, order_id: str) -> None:
    [sent] = fake_psp.sent("POST", "/v1/orders")
    assert sent.body == {
        "amount": AMOUNT,
        "currency": "INR",
        "receipt": SESSION,
        "notes": {"checkout_session_id": SESSION},
    }
    basic = base64.b64encode(f"{RAZORPAY_KEY_ID}:{RAZORPAY_KEY_SECRET}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {basic}"
    assert order_id in fake_psp.razorpay_orders


def test_a_changed_total_gets_a_new_order(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    second = provider.prepare(SESSION, AMOUNT + 100, "inr", order_id)
    assert second != order_id
    assert fake_psp.razorpay_orders[second]["amount"] == AMOUNT + 100


def test_handler_carries_key_and_order(provider: RazorpayProvider, order_id: str) -> None:
    schema = json.loads((SPEC / "schema.agentic_checkout.json").read_text())
    validator = Draft202012Validator({**schema, "$ref": "#/$defs/PaymentHandler"})
    [handler] = provider.handlers(order_id)
    validator.validate(handler)
    assert handler["psp"] == "razorpay"
    assert handler["requires_delegate_payment"] is False
    assert handler["requires_pci_compliance"] is False
    assert handler["config"]["key_id"] == RAZORPAY_KEY_ID
    assert handler["config"]["order_id"] == order_id
    assert handler["config"]["currency"] == "INR"
    assert handler["config"]["environment"] == "test"
    assert RAZORPAY_KEY_SECRET not in json.dumps(handler)
    assert "order_id" not in provider.handlers(None)[0]["config"]


def test_authorized_payment_is_verified_fetched_and_captured(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT)
    result = provider.charge(charge_request(order_id, payment_id))

    assert (result.status, result.reference) == (ChargeStatus.SUCCEEDED, payment_id)
    assert len(fake_psp.sent("GET", rf"/v1/payments/{payment_id}")) == 1
    [capture] = fake_psp.sent("POST", rf"/v1/payments/{payment_id}/capture")
    assert capture.body == {"amount": AMOUNT, "currency": "INR"}
    assert fake_psp.razorpay_payments[payment_id]["status"] == "captured"


def test_captured_payment_is_not_captured_again(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT, status="captured")
    result = provider.charge(charge_request(order_id, payment_id, as_token=True))

    assert result.status == ChargeStatus.SUCCEEDED
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []


@pytest.mark.parametrize(
    "case", ["bad signature", "other order", "missing field", "signed with another secret"]
)
def test_unverifiable_credentials_are_declined_before_any_call(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str, case: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT)
    if case == "bad signature":
        request = charge_request(order_id, payment_id, signature="0" * 64)
    elif case == "other order":
        request = charge_request(order_id, payment_id, session_order="order_someone_else")
    elif case == "signed with another secret":
        request = charge_request(
            order_id, payment_id, signature=checkout_signature(order_id, payment_id, "x")
        )
    else:
        request = ChargeRequest(
            SESSION,
            AMOUNT,
            "inr",
            PaymentCredential(token=payment_id, fields={"razorpay_payment_id": payment_id}),
            "",
            order_id,
        )
    result = provider.charge(request)

    assert (result.status, result.decline_code) == (ChargeStatus.DECLINED, "unverified_payment")
    assert result.message
    assert fake_psp.sent("GET", r"/v1/payments/.*") == []


@pytest.mark.parametrize(("amount", "currency"), [(AMOUNT - 1, "INR"), (AMOUNT, "USD")])
def test_amount_or_currency_mismatch_is_declined_and_not_captured(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str, amount: int, currency: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, amount, currency=currency)
    result = provider.charge(charge_request(order_id, payment_id))

    assert (result.status, result.decline_code) == (ChargeStatus.DECLINED, "amount_mismatch")
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []


def test_failed_payment_is_declined_with_razorpays_reason(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(
        order_id,
        AMOUNT,
        status="failed",
        error_code="BAD_REQUEST_ERROR",
        error_description="Your payment has been declined by your bank.",
    )
    result = provider.charge(charge_request(order_id, payment_id))

    assert (result.status, result.decline_code) == (ChargeStatus.DECLINED, "payment_declined")
    assert result.message == "Your payment has been declined by your bank."


def test_failed_payment_without_a_description_gets_the_shared_sentence(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    # Razorpay's error_reason speaks Stripe's vocabulary here: declines.py words it.
    payment_id = fake_psp.add_razorpay_payment(
        order_id, AMOUNT, status="failed", error_reason="INSUFFICIENT_FUNDS"
    )
    result = provider.charge(charge_request(order_id, payment_id))

    assert (result.status, result.decline_code) == (ChargeStatus.DECLINED, "insufficient_funds")
    assert result.message == decline("insufficient_funds").message


@pytest.mark.parametrize("failure", ["500", "lost answer"])
def test_the_library_never_retries(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str, failure: str
) -> None:
    # A retried capture must be the checkout's decision: one failure is one call.
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT)
    if failure == "500":
        fake_psp.razorpay_server_errors = 1
    else:
        fake_psp.drop_responses = 1
    with pytest.raises(ProviderError) as info:
        provider.charge(charge_request(order_id, payment_id))

    assert len(fake_psp.sent("GET", rf"/v1/payments/{payment_id}")) == 1
    assert fake_psp.sent("POST", r"/v1/payments/.*/capture") == []
    assert info.value.retryable  # Razorpay has no idempotency keys to replay a stored failure


def test_unreachable_razorpay_raises_provider_error(fake_psp: FakePSP, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = RazorpayProvider(
        provider_settings(fake_psp, "razorpay", tmp_path, RAZORPAY_API_BASE=closed)
    )
    with pytest.raises(ProviderError) as info:
        provider.prepare(SESSION, AMOUNT, "inr", None)
    assert RAZORPAY_KEY_SECRET not in str(info.value)


def test_unknown_payment_raises_provider_error(provider: RazorpayProvider, order_id: str) -> None:
    with pytest.raises(ProviderError):
        provider.charge(charge_request(order_id, "pay_doesnotexist"))


# --- webhooks ---------------------------------------------------------------------------


def razorpay_event(
    event: str,
    payment: dict[str, Any] | None = None,
    order: dict[str, Any] | None = None,
    **extra: Any,
) -> bytes:
    payload: dict[str, Any] = {
        k: {"entity": v} for k, v in (("payment", payment), ("order", order), *extra.items()) if v
    }
    return json.dumps(
        {
            "entity": "event",
            "account_id": "acc_1",
            "event": event,
            "contains": list(payload),
            "payload": payload,
            "created_at": 1_700_000_000,
        }
    ).encode()


def signed(
    body: bytes, secret: str = RAZORPAY_WEBHOOK_SECRET, event_id: str | None = "evt_rzp_1"
) -> dict[str, str]:
    """Sign the way Razorpay does: hex HMAC-SHA256 of the raw body with the webhook secret."""
    headers = {"X-Razorpay-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if event_id:
        headers["X-Razorpay-Event-Id"] = event_id
    return headers


def test_payment_captured_takes_the_session_from_our_order(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT, status="captured")
    payment = {
        **fake_psp.razorpay_payments[payment_id],
        "notes": {"checkout_session_id": "cs_someone_elses_session"},
    }
    body = razorpay_event("payment.captured", payment)
    event = provider.parse_webhook(body, signed(body))

    assert (event.kind, event.reference) == (EventKind.PAID, payment_id)
    assert event.id.startswith("signed_")  # from the signed body, not X-Razorpay-Event-Id
    assert event.session_id == SESSION  # the buyer-supplied payment notes are not trusted
    assert (event.amount, event.currency) == (AMOUNT, "inr")
    assert len(fake_psp.sent("GET", rf"/v1/orders/{order_id}")) == 1


def test_order_paid_needs_no_lookup(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(order_id, AMOUNT, status="captured")
    body = razorpay_event(
        "order.paid", fake_psp.razorpay_payments[payment_id], fake_psp.razorpay_orders[order_id]
    )
    event = provider.parse_webhook(body, signed(body))

    assert (event.kind, event.session_id, event.reference) == (EventKind.PAID, SESSION, payment_id)
    assert fake_psp.sent("GET", r"/v1/orders/.*") == []


def test_payment_failed_and_dispute(
    provider: RazorpayProvider, fake_psp: FakePSP, order_id: str
) -> None:
    payment_id = fake_psp.add_razorpay_payment(
        order_id, AMOUNT, status="failed", error_description="Card declined by bank."
    )
    body = razorpay_event("payment.failed", fake_psp.razorpay_payments[payment_id])
    failed = provider.parse_webhook(body, signed(body))
    assert (failed.kind, failed.session_id, failed.decline_code, failed.message) == (
        EventKind.FAILED,
        SESSION,
        "payment_declined",
        "Card declined by bank.",
    )

    dispute = {
        "id": "disp_1",
        "entity": "dispute",
        "payment_id": payment_id,
        "amount": AMOUNT,
        "currency": "INR",
    }
    body = razorpay_event(
        "payment.dispute.created", fake_psp.razorpay_payments[payment_id], dispute=dispute
    )
    disputed = provider.parse_webhook(body, signed(body, event_id="evt_rzp_2"))
    assert (disputed.kind, disputed.session_id, disputed.reference) == (
        EventKind.DISPUTED,
        SESSION,
        payment_id,
    )


def test_payment_without_order_has_no_session(provider: RazorpayProvider) -> None:
    payment = {
        "id": "pay_direct",
        "entity": "payment",
        "amount": 100,
        "currency": "INR",
        "status": "captured",
        "order_id": None,
        "notes": {"checkout_session_id": SESSION},
    }
    body = razorpay_event("payment.captured", payment)
    event = provider.parse_webhook(body, signed(body))
    assert (event.kind, event.session_id, event.reference) == (EventKind.PAID, None, "pay_direct")


def test_other_events_are_ignored_without_lookups(
    provider: RazorpayProvider, fake_psp: FakePSP
) -> None:
    body = razorpay_event("refund.created", {"id": "pay_1", "order_id": "order_1"})
    assert provider.parse_webhook(body, signed(body)).kind == EventKind.IGNORED
    assert fake_psp.requests == []


def test_event_id_comes_from_what_razorpay_signed(provider: RazorpayProvider) -> None:
    body = razorpay_event("refund.created", {"id": "pay_1"})
    first = provider.parse_webhook(body, signed(body, event_id=None))
    again = provider.parse_webhook(
        body, {"x-razorpay-signature": signed(body)["X-Razorpay-Signature"]}
    )
    assert first.id == again.id and first.id.startswith("signed_")
    # Another state of the same payment is another event.
    other = razorpay_event("refund.created", {"id": "pay_1", "status": "refunded"})
    assert provider.parse_webhook(other, signed(other)).id != first.id
    # Without entity ids, the digest of the signed body names it.
    bare = razorpay_event("account.updated")
    assert provider.parse_webhook(bare, signed(bare)).id.startswith("body_")


@pytest.mark.parametrize("case", ["tampered body", "wrong secret", "missing header", "not hex"])
def test_webhook_signature_failures(provider: RazorpayProvider, case: str) -> None:
    body = razorpay_event(
        "payment.captured", {"id": "pay_1", "amount": AMOUNT, "currency": "INR", "order_id": None}
    )
    headers = signed(body)
    if case == "tampered body":
        body = body.replace(str(AMOUNT).encode(), b"100")
    elif case == "wrong secret":
        headers = signed(body, secret="another_secret")
    elif case == "missing header":
        headers = {}
    else:
        headers = {"X-Razorpay-Signature": "sha256=nothex"}
    with pytest.raises(WebhookSignatureError, match="X-Razorpay-Signature did not verify"):
        provider.parse_webhook(body, headers)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"payload": {}}',
        b'{"event": "payment.captured", "payload": {"payment": {"entity": "pay_1"}}}',
        b'{"event": "payment.captured", "payload": {"payment": {"entity": '
        b'{"id": "pay_1", "amount": "499.00", "currency": "INR"}}}}',
    ],
    ids=["not json", "no event", "entity not an object", "amount not paise"],
)
def test_signed_but_malformed_event_is_a_payload_error(
    provider: RazorpayProvider, body: bytes
) -> None:
    with pytest.raises(WebhookPayloadError, match="verified"):
        provider.parse_webhook(body, signed(body))
