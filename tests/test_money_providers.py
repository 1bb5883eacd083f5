"""Money in each provider's units: Stripe's two-decimal ISK, three-decimal amounts ending in 0,
and a store currency the provider does not take stops start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shop import money
from shop.config.settings import load_settings
from shop.errors import ConfigError
from shop.payments import ChargeRequest, PaymentCredential
from shop.payments.stripe import StripeProvider
from tests.fake_psp import FakePSP, provider_settings
from tests.psp_app import stripe_event, stripe_signature


@pytest.mark.parametrize(
    ("provider", "currency", "amount", "sent"),
    [
        ("stripe", "isk", 1500, 150000),  # ISO: 0 decimals; Stripe: two-decimal ISK
        ("razorpay", "isk", 1500, 1500),
        ("stripe", "jpy", 1500, 1500),
        ("stripe", "usd", 2999, 2999),
        ("stripe", "kwd", 12345, 12350),  # three decimals, the last one 0 (half-up)
        ("stripe", "kwd", 12344, 12340),
        ("razorpay", "bhd", 99991, 99990),  # Razorpay's own example: 99.991 -> 99990
        ("razorpay", "omr", 295999, 296000),
        ("test", "kwd", 12345, 12345),  # the offline provider takes any amount
    ],
)
def test_amounts_go_out_in_the_providers_units(provider, currency, amount, sent) -> None:
    assert money.to_provider_units(amount, currency, provider) == sent


def test_provider_amounts_come_back_in_store_units() -> None:
    assert money.from_provider_units(150000, "isk", "stripe") == 1500
    assert money.from_provider_units(12350, "kwd", "stripe") == 12350
    assert money.provider_exponent("stripe", "isk") == 2
    assert money.exponent("isk") == 0


def test_stripe_charges_isk_in_its_units_and_reads_them_back(
    fake_psp: FakePSP, tmp_path: Path
) -> None:
    provider = StripeProvider(provider_settings(fake_psp, "stripe", tmp_path))
    result = provider.charge(
        ChargeRequest("cs_isk", 1500, "isk", PaymentCredential("pm_card_visa"))
    )
    [sent] = fake_psp.sent("POST", "/v1/payment_intents")
    assert (sent.body["amount"], sent.body["currency"]) == ("150000", "isk")  # 1,500 kr
    body = stripe_event(
        "payment_intent.succeeded",
        {
            "id": result.reference,
            "object": "payment_intent",
            "amount": 150000,
            "amount_received": 150000,
            "currency": "isk",
            "metadata": {"checkout_session_id": "cs_isk"},
        },
    )
    event = provider.parse_webhook(body, {"Stripe-Signature": stripe_signature(body)})
    assert event.amount == 1500  # back in the store's ISO units


@pytest.mark.parametrize(
    ("provider", "currency"), [("stripe", "iqd"), ("razorpay", "jod"), ("razorpay", "tnd")]
)
def test_a_currency_the_provider_does_not_take_stops_start_up(
    fake_psp: FakePSP, tmp_path: Path, provider: str, currency: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"paymentProvider": provider, "currency": currency}))
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={"SHOP_CONFIG": str(config), "SHOP_API_KEYS": "a:b", **fake_psp.env(provider)}
        )
    message = str(info.value)
    assert "currency" in message and currency in message and message.count(".") <= 2
