"""The fake PSP is as strict as Stripe and Razorpay: proven through the real libraries.

Each test sends what Stripe (or Razorpay) refuses and checks the fake refuses it the same way,
with the error the library turns into its own exception. The first one is the audit's finding:
the request shape this store sent until now fails against the fake.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import razorpay
import stripe

from shop.payments import offline
from tests import fake_stripe_rules as rules
from tests.fake_psp import (
    RAZORPAY_KEY_ID,
    RAZORPAY_KEY_SECRET,
    RESTRICTED_KEY,
    STRIPE_KEY,
    FakePSP,
)

PREVIEW = "2026-04-22.preview"


def client(fake: FakePSP, key: str = STRIPE_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": fake.url}, max_network_retries=0)


def create(fake: FakePSP, params: dict[str, Any], version: str | None = None, **options: Any):
    opts = {"stripe_version": version, **options} if version else options
    return client(fake).v1.payment_intents.create(params=params, options=opts)


BASE = {"amount": 2999, "currency": "usd", "confirm": True}


def test_todays_request_shape_fails_against_the_fake(fake_psp: FakePSP) -> None:
    # What shop/payments/stripe.py sent for tok_ tokens before: payment_method_types and a
    # card token inside payment_method_data, under the library's own version.
    old = {
        **BASE,
        "payment_method_types": ["card"],
        "metadata": {"checkout_session_id": "cs_1"},
        "payment_method_data": {"type": "card", "card": {"token": "tok_visa"}},
    }
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, old)
    assert info.value.code == "payment_method_types_no_longer_supported"
    assert info.value.param == "payment_method_types"

    # Without the removed parameter, the card token is still not a PaymentIntent parameter.
    without = {k: v for k, v in old.items() if k != "payment_method_types"}
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, {**without, "allowed_payment_method_types": ["card"]})
    assert (info.value.code, info.value.param) == ("parameter_unknown", "payment_method_data[card]")

    # The Shared Payment Token field exists only on preview versions.
    spt = {**BASE, "allowed_payment_method_types": ["card"]}
    spt["payment_method_data"] = {"shared_payment_granted_token": fake_psp.grant_spt("spt_1")}
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, spt)
    assert info.value.code == "parameter_unknown"
    assert info.value.param == "payment_method_data[shared_payment_granted_token]"
    assert fake_psp.payment_intents == {}  # nothing acted on


def test_every_parameter_is_checked_against_the_librarys_typed_params(fake_psp: FakePSP) -> None:
    ok = {**BASE, "payment_method": "pm_card_visa", "allowed_payment_method_types": ["card"]}
    assert create(fake_psp, ok).status == "succeeded"
    for extra, param in (
        ({"colour": "red"}, "colour"),
        ({"payment_method_options": {"card": {"three_d": {"x": "1"}}}}, None),
        ({"metadata": "not-a-hash"}, "metadata"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as info:
            create(fake_psp, {**ok, **extra})
        assert info.value.code in ("parameter_unknown", "parameter_invalid_empty", None)
        if param:
            assert info.value.param == param
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, {"currency": "usd"})
    assert (info.value.code, info.value.param) == ("parameter_missing", "amount")


def test_versions_decide_which_payment_method_type_parameter_exists(fake_psp: FakePSP) -> None:
    spt = {**BASE, "payment_method_data": {"shared_payment_granted_token": "spt_v"}}
    fake_psp.grant_spt("spt_v")
    # 2026-04-22.preview: payment_method_types is valid, its replacement not yet there.
    assert create(fake_psp, {**spt, "payment_method_types": ["card"]}, PREVIEW).status == (
        "succeeded"
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, {**spt, "allowed_payment_method_types": ["card"]}, PREVIEW)
    assert info.value.code == "parameter_unknown"
    # From 2026-08-26 (preview) payment_method_types is refused.
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, {**spt, "payment_method_types": ["card"]}, "2026-09-30.preview")
    assert info.value.code == "payment_method_types_no_longer_supported"
    # allowed_payment_method_types excludes automatic_payment_methods (changelog 2026-07-29).
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(
            fake_psp,
            {
                **BASE,
                "payment_method": "pm_card_visa",
                "allowed_payment_method_types": ["card"],
                "automatic_payment_methods": {"enabled": True},
            },
        )
    assert info.value.code == "parameters_exclusive"
    # Dynamic payment methods without a return_url cannot be confirmed.
    with pytest.raises(stripe.InvalidRequestError) as info:
        create(fake_psp, {**BASE, "payment_method": "pm_card_visa"})
    assert info.value.param == "return_url"


def test_keys_are_checked(fake_psp: FakePSP) -> None:
    ok = {**BASE, "payment_method": "pm_card_visa", "allowed_payment_method_types": ["card"]}
    with pytest.raises(stripe.AuthenticationError):
        client(fake_psp, "sk_test_wrong").v1.payment_intents.create(params=ok)
    restricted = client(fake_psp, RESTRICTED_KEY)
    intent = restricted.v1.payment_intents.create(params=ok)
    with pytest.raises(stripe.PermissionError) as info:
        restricted.v1.refunds.create(params={"payment_intent": intent.id})
    assert "rak_refund_write" in str(info.value.user_message)


def test_validation_errors_are_not_stored_under_the_idempotency_key(fake_psp: FakePSP) -> None:
    ok = {**BASE, "payment_method": "pm_card_visa", "allowed_payment_method_types": ["card"]}
    with pytest.raises(stripe.InvalidRequestError):
        create(fake_psp, {**ok, "colour": "red"}, idempotency_key="k1")
    # Stripe saved nothing for the refused request, so the key is free for a valid one.
    assert create(fake_psp, ok, idempotency_key="k1").status == "succeeded"
    # A card decline is a result Stripe stores: the same key replays it.
    declined = {**ok, "payment_method": "pm_card_chargeDeclined"}
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            create(fake_psp, declined, idempotency_key="k2")
    assert len(fake_psp.payment_intents) == 2
    with pytest.raises(stripe.IdempotencyError):
        create(fake_psp, {**ok, "amount": 1}, idempotency_key="k1")


def test_a_concurrent_request_with_the_same_key_gets_409(fake_psp: FakePSP) -> None:
    ok = {**BASE, "payment_method": "pm_card_visa", "allowed_payment_method_types": ["card"]}
    fake_psp.hold = "POST /v1/payment_intents"
    first: list[Any] = []
    thread = threading.Thread(
        target=lambda: first.append(create(fake_psp, ok, idempotency_key="k"))
    )
    thread.start()
    assert fake_psp.held.wait(5)
    with pytest.raises(stripe.APIError) as info:
        create(fake_psp, ok, idempotency_key="k")
    assert info.value.http_status == 409
    assert (info.value.json_body or {})["error"]["code"] == "idempotency_key_in_use"
    fake_psp.resume.set()
    thread.join(5)
    assert first[0].status == "succeeded"
    assert create(fake_psp, ok, idempotency_key="k").id == first[0].id  # then replayed


def test_cancel_refuses_succeeded_and_canceled_intents(fake_psp: FakePSP) -> None:
    stripe_client = client(fake_psp)
    ok = {**BASE, "payment_method": "pm_card_visa", "allowed_payment_method_types": ["card"]}
    paid = create(fake_psp, ok)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.payment_intents.cancel(paid.id)
    assert info.value.code == "payment_intent_unexpected_state"
    needs_3ds = create(fake_psp, {**ok, "payment_method": "pm_card_threeDSecure2Required"})
    assert needs_3ds.status == "requires_action"
    assert stripe_client.v1.payment_intents.cancel(needs_3ds.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.cancel(needs_3ds.id)


@pytest.mark.parametrize(
    ("token", "outcome"),
    [
        ("tok_visa", "succeeded"),
        ("tok_cvcCheckFail", "succeeded"),  # the CVC check fails, the charge does not
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_chargeDeclinedIncorrectCvc", "incorrect_cvc"),
        ("tok_threeDSecure2Required", "requires_action"),
        ("tok_insufficientFunds", "resource_missing"),  # not a Stripe token
        ("tok_made_up", "resource_missing"),
    ],
)
def test_tokens_behave_as_stripe_documents_them(fake_psp: FakePSP, token: str, outcome: str):
    stripe_client = client(fake_psp)
    try:
        method = stripe_client.v1.payment_methods.create(
            params={"type": "card", "card": {"token": token}}
        )
        intent = create(
            fake_psp,
            {**BASE, "payment_method": method.id, "allowed_payment_method_types": ["card"]},
        )
        got = intent.status
    except stripe.CardError as exc:
        got = (exc.json_body or {})["error"].get("decline_code") or exc.code
    except stripe.InvalidRequestError as exc:
        got = exc.code
    assert got == outcome


def test_the_offline_provider_knows_the_same_test_cards() -> None:
    assert frozenset(rules.STRIPE_TEST_CARDS) == offline.TEST_CARD_NAMES


def test_razorpay_errors_come_in_razorpays_shape(fake_psp: FakePSP) -> None:
    wrong = razorpay.Client(auth=(RAZORPAY_KEY_ID, "wrong"), base_url=fake_psp.url)
    with pytest.raises(razorpay.errors.BadRequestError, match="Authentication failed"):
        wrong.order.fetch("order_x")  # not ServerError: the library reads Razorpay's shape
    right = razorpay.Client(auth=(RAZORPAY_KEY_ID, RAZORPAY_KEY_SECRET), base_url=fake_psp.url)
    with pytest.raises(razorpay.errors.BadRequestError, match="does not exist"):
        right.payment.fetch("pay_missing")
    fake_psp.razorpay_server_errors = 1
    with pytest.raises(razorpay.errors.ServerError):
        right.order.fetch("order_x")
