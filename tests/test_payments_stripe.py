"""StripeProvider via the real `stripe` library against the fake PSP: what is sent and answered."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import stripe
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
from shop.payments.stripe import StripeProvider
from shop.payments.stripe_params import DEFAULT_SPT_API_VERSION
from tests.fake_psp import (
    STRIPE_WEBHOOK_SECRET,
    FakePSP,
    provider_settings,
)

SPEC = Path(__file__).resolve().parents[1] / "shop" / "spec" / "acp" / "2026-04-17"
SESSION = "cs_0123456789abcdef01234567"
INTENTS = r"/v1/payment_intents"


def make_provider(fake: FakePSP, tmp_path: Path, **env: str) -> StripeProvider:
    return StripeProvider(provider_settings(fake, "stripe", tmp_path, **env))


def charge_request(
    token: str, amount: int = 2999, credential_type: str | None = None, session_id: str = SESSION
) -> ChargeRequest:
    return ChargeRequest(
        session_id=session_id,
        amount=amount,
        currency="usd",
        credential=PaymentCredential(token=token, credential_type=credential_type),
        description="Fake PSP Store checkout",
    )


@pytest.fixture
def provider(fake_psp: FakePSP, tmp_path: Path) -> StripeProvider:
    return make_provider(fake_psp, tmp_path)


def test_card_token_becomes_a_payment_method_then_one_confirmed_payment_intent(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    request = charge_request("tok_visa")
    result = provider.charge(request)

    assert result.status == ChargeStatus.SUCCEEDED
    assert result.reference in fake_psp.payment_intents
    [method] = fake_psp.sent("POST", "/v1/payment_methods")
    assert method.body == {"type": "card", "card": {"token": "tok_visa"}}
    assert method.headers["Idempotency-Key"] == f"{request.idempotency_key}-pm"
    [pm_id] = fake_psp.payment_methods
    [sent] = fake_psp.sent("POST", INTENTS)
    assert sent.body == {
        "amount": "2999",
        "currency": "usd",
        "confirm": "true",
        # payment_method_types is refused on this version; its replacement (2026-07-29):
        "allowed_payment_method_types": ["card"],
        "metadata": {"checkout_session_id": SESSION, "shop_attempt": request.idempotency_key},
        "payment_method": pm_id,
        "description": "Fake PSP Store checkout",
    }
    assert sent.headers["Idempotency-Key"] == request.idempotency_key
    assert sent.headers["Authorization"] == "Bearer sk_test_fake_123"
    for call in (method, sent):
        assert call.headers["Stripe-Version"] == stripe.api_version == "2026-10-28.endive"


def test_shared_payment_token_uses_the_spt_parameter_and_api_version(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    result = provider.charge(charge_request(fake_psp.grant_spt("spt_123abc")))

    assert result.status == ChargeStatus.SUCCEEDED
    [sent] = fake_psp.sent("POST", INTENTS)
    assert sent.body["payment_method_data"] == {"shared_payment_granted_token": "spt_123abc"}
    assert sent.body["payment_method_types"] == ["card"]  # still valid on 2026-04-22.preview
    assert "payment_method" not in sent.body
    assert sent.headers["Stripe-Version"] == DEFAULT_SPT_API_VERSION == "2026-04-22.preview"
    assert not fake_psp.sent("POST", "/v1/payment_methods")


def test_spt_api_version_comes_from_the_environment(fake_psp: FakePSP, tmp_path: Path) -> None:
    provider = make_provider(fake_psp, tmp_path, STRIPE_API_VERSION="2026-09-30.preview")
    fake_psp.grant_spt("spt_456")
    assert provider.charge(charge_request("spt_456", credential_type="spt")).status == "succeeded"
    provider.charge(charge_request("tok_visa"))

    spt, card = fake_psp.sent("POST", INTENTS)
    assert spt.headers["Stripe-Version"] == "2026-09-30.preview"
    assert spt.body["allowed_payment_method_types"] == ["card"]  # the version decides
    assert "payment_method_types" not in spt.body
    assert card.headers["Stripe-Version"] == stripe.api_version  # only SPT calls change


def test_payment_method_id_is_passed_as_payment_method(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    provider.charge(charge_request("pm_card_visa"))

    [sent] = fake_psp.sent("POST", INTENTS)
    assert sent.body["payment_method"] == "pm_card_visa"
    assert "payment_method_data" not in sent.body


def test_retrying_the_same_attempt_never_creates_a_second_payment_intent(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    first = provider.charge(charge_request("tok_visa"))
    again = provider.charge(charge_request("tok_visa"))

    assert again == first
    assert len(fake_psp.payment_intents) == 1
    keys = {r.headers["Idempotency-Key"] for r in fake_psp.sent("POST", INTENTS)}
    assert len(keys) == 1


def test_a_new_card_is_a_new_attempt(fake_psp: FakePSP, provider: StripeProvider) -> None:
    declined = provider.charge(charge_request("tok_chargeDeclined"))
    paid = provider.charge(charge_request("tok_visa"))

    assert declined.status == ChargeStatus.DECLINED
    assert paid.status == ChargeStatus.SUCCEEDED
    assert len(fake_psp.payment_intents) == 2
    assert len({r.headers["Idempotency-Key"] for r in fake_psp.sent("POST", INTENTS)}) == 2


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedIncorrectCvc", "incorrect_cvc"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_chargeDeclinedExpiredCard", "expired_card"),
        ("tok_chargeDeclinedLostCard", "card_declined"),  # the reason is not told to buyers
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_unknown_to_stripe", "invalid"),  # Stripe: resource_missing
        ("pm_unknown_to_stripe", "invalid"),
    ],
)
def test_declines_map_to_a_code_and_a_buyer_sentence(
    provider: StripeProvider, token: str, code: str
) -> None:
    result = provider.charge(charge_request(token))

    assert result.status == ChargeStatus.DECLINED
    assert result.decline_code == code
    assert result.message and result.message.endswith(".") and "Stripe" not in result.message


def test_three_d_secure_cancels_the_payment_intent(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    request = charge_request("tok_threeDSecure2Required")
    result = provider.charge(request)

    assert result.status == ChargeStatus.DECLINED
    assert result.decline_code == "requires_3ds"
    [cancel] = fake_psp.sent("POST", rf"{INTENTS}/{result.reference}/cancel")
    assert cancel.headers["Idempotency-Key"] == f"{request.idempotency_key}-cancel"
    assert fake_psp.payment_intents[result.reference]["status"] == "canceled"


def test_processing_is_pending(fake_psp: FakePSP, provider: StripeProvider) -> None:
    fake_psp.next_outcomes.append("processing")
    result = provider.charge(charge_request("tok_visa"))

    assert result.status == ChargeStatus.PENDING
    assert result.reference and result.reference.startswith("pi_")


def test_server_error_raises_provider_error_without_retrying(
    fake_psp: FakePSP, provider: StripeProvider
) -> None:
    fake_psp.next_outcomes.append("server_error")
    with pytest.raises(ProviderError) as info:
        provider.charge(charge_request("tok_visa"))

    assert isinstance(info.value.__cause__, stripe.APIError)
    assert len(fake_psp.sent("POST", INTENTS)) == 1
    assert "sk_test_fake_123" not in str(info.value)
    # Stripe stored the 500 under this token's idempotency key: retrying it cannot help.
    assert info.value.retryable is False


def test_unreachable_stripe_raises_provider_error(fake_psp: FakePSP, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = make_provider(fake_psp, tmp_path, STRIPE_API_BASE=closed)
    with pytest.raises(ProviderError) as info:
        provider.charge(charge_request("tok_visa"))
    assert isinstance(info.value.__cause__, stripe.APIConnectionError)
    assert info.value.retryable is True  # nothing reached Stripe: the same key is safe again


def test_providers_share_no_global_stripe_state(fake_psp: FakePSP, tmp_path: Path) -> None:
    before = (stripe.api_key, stripe.api_base, stripe.max_network_retries)
    make_provider(fake_psp, tmp_path).charge(charge_request("tok_visa"))
    assert (stripe.api_key, stripe.api_base, stripe.max_network_retries) == before


def test_handler_is_a_valid_acp_payment_handler(fake_psp: FakePSP, tmp_path: Path) -> None:
    schema = json.loads((SPEC / "schema.agentic_checkout.json").read_text())
    validator = Draft202012Validator({**schema, "$ref": "#/$defs/PaymentHandler"})
    [handler] = make_provider(fake_psp, tmp_path).handlers(None)
    validator.validate(handler)
    assert handler["name"] == "dev.acp.tokenized.card"
    assert handler["requires_delegate_payment"] is True
    assert handler["config"] == {
        "merchant_id": "acct_unknown",
        "psp": "stripe",
        "accepted_brands": ["visa", "mastercard", "amex", "discover"],
        "supports_3ds": False,
        "environment": "test",
    }

    [live] = make_provider(
        fake_psp, tmp_path, STRIPE_SECRET_KEY="sk_live_x", STRIPE_ACCOUNT_ID="acct_42"
    ).handlers("ignored")
    assert live["config"]["environment"] == "production"
    assert live["config"]["merchant_id"] == "acct_42"


def test_prepare_needs_no_provider_order(provider: StripeProvider) -> None:
    assert provider.prepare(SESSION, 2999, "usd", None) is None


# --- webhooks ---------------------------------------------------------------------------


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "2026-04-22",
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


def signed(body: bytes, secret: str = STRIPE_WEBHOOK_SECRET, t: int | None = None) -> dict:
    """Sign the way Stripe does: v1 = hex HMAC-SHA256(secret, f"{t}.{body}")."""
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={digest}"}


INTENT = {
    "id": "pi_abc",
    "object": "payment_intent",
    "amount": 2999,
    "amount_received": 2999,
    "currency": "usd",
    "metadata": {"checkout_session_id": SESSION},
}


def test_payment_intent_succeeded(provider: StripeProvider) -> None:
    body = stripe_event("payment_intent.succeeded", INTENT)
    event = provider.parse_webhook(body, signed(body))

    assert (event.id, event.kind, event.session_id, event.reference) == (
        "evt_1",
        EventKind.PAID,
        SESSION,
        "pi_abc",
    )
    assert (event.amount, event.currency) == (2999, "usd")


def test_payment_intent_payment_failed_carries_the_decline(provider: StripeProvider) -> None:
    failed = {
        **INTENT,
        "status": "requires_payment_method",
        "last_payment_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
        },
    }
    body = stripe_event("payment_intent.payment_failed", failed)
    event = provider.parse_webhook(body, signed(body))

    assert event.kind == EventKind.FAILED
    assert event.session_id == SESSION
    assert event.decline_code == "insufficient_funds"
    assert event.message


def test_dispute_names_the_payment_intent(provider: StripeProvider) -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 2999,
        "currency": "usd",
        "payment_intent": "pi_abc",
        "charge": "ch_1",
        "reason": "fraudulent",
        "metadata": {},
    }
    body = stripe_event("charge.dispute.created", dispute)
    event = provider.parse_webhook(body, signed(body))
    assert (event.kind, event.reference, event.session_id) == (EventKind.DISPUTED, "pi_abc", None)

    expanded = {**dispute, "payment_intent": INTENT}
    body = stripe_event("charge.dispute.created", expanded)
    event = provider.parse_webhook(body, signed(body))
    assert (event.reference, event.session_id) == ("pi_abc", SESSION)


def test_other_events_are_ignored(provider: StripeProvider) -> None:
    body = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    assert provider.parse_webhook(body, signed(body)).kind == EventKind.IGNORED


def test_paid_event_without_session_has_no_session_id(provider: StripeProvider) -> None:
    body = stripe_event("payment_intent.succeeded", {**INTENT, "metadata": {}})
    event = provider.parse_webhook(body, signed(body))
    assert (event.kind, event.session_id) == (EventKind.PAID, None)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered body", "No signatures found matching"),
        ("wrong secret", "No signatures found matching"),
        ("stale timestamp", "Timestamp outside the tolerance zone"),
        ("missing header", "Stripe-Signature header is missing"),
        ("no v1", "No signatures found with expected scheme"),
        ("garbage header", "Unable to extract timestamp"),
    ],
)
def test_webhook_signature_failures(provider: StripeProvider, case: str, reason: str) -> None:
    body = stripe_event("payment_intent.succeeded", INTENT)
    headers = signed(body)
    if case == "tampered body":
        body = body.replace(b"2999", b"1")
    elif case == "wrong secret":
        headers = signed(body, secret="whsec_someone_else")
    elif case == "stale timestamp":
        headers = signed(body, t=int(time.time()) - 301)
    elif case == "missing header":
        headers = {}
    elif case == "no v1":
        headers = {"Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v0=")}
    else:
        headers = {"Stripe-Signature": "not a signature"}
    with pytest.raises(WebhookSignatureError, match=reason):
        provider.parse_webhook(body, headers)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_1", "object": "event"}',
        b"not json at all",
        b'{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", '
        b'"data": {"object": {"id": "pi_1", "amount": "29.99", "metadata": {}}}}',
    ],
    ids=["no type", "not json", "amount not minor units"],
)
def test_signed_but_malformed_event_is_a_payload_error(
    provider: StripeProvider, body: bytes
) -> None:
    # Genuine (it verified), so not a signature failure: the store counts it apart.
    with pytest.raises(WebhookPayloadError, match="verified but"):
        provider.parse_webhook(body, signed(body))


def test_a_body_that_is_not_utf8_is_a_signature_failure(provider: StripeProvider) -> None:
    body = b"\xff\xfe not text"
    with pytest.raises(WebhookSignatureError, match="not UTF-8"):
        provider.parse_webhook(body, signed(body))
