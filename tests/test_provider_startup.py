"""Start-up says whether the payment provider moves real money, and refuses missing secrets."""

from __future__ import annotations

import logging

import pytest

from shop.errors import ConfigError

STRIPE = {"SHOP_API_KEYS": "agent:secret-token", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
ACCOUNT = {"STRIPE_ACCOUNT_ID": "acct_1A2b3C4d5E6f7G8h"}
RAZORPAY = {
    "SHOP_API_KEYS": "agent:secret-token",
    "RAZORPAY_KEY_SECRET": "rzp_secret_x",
    "RAZORPAY_WEBHOOK_SECRET": "rzp_whsec_x",
}


def _mode_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "shop" and "money" in r.getMessage()]


@pytest.mark.parametrize(
    ("provider", "env", "level", "line"),
    [
        (
            "stripe",
            {**STRIPE, "STRIPE_SECRET_KEY": "sk_test_51abcdef"},
            logging.WARNING,
            "Stripe is in test mode (STRIPE_SECRET_KEY is a sk_test_ key): no real money moves",
        ),
        (
            "stripe",
            {**STRIPE, "STRIPE_SECRET_KEY": "rk_test_51abcdef"},
            logging.WARNING,
            "Stripe is in test mode (STRIPE_SECRET_KEY is a rk_test_ key): no real money moves",
        ),
        (
            "stripe",
            {**STRIPE, **ACCOUNT, "STRIPE_SECRET_KEY": "sk_live_51abcdef"},
            logging.WARNING,
            "Stripe is LIVE (STRIPE_SECRET_KEY is a sk_live_ key): payments move real money",
        ),
        (
            "stripe",
            {**STRIPE, **ACCOUNT, "STRIPE_SECRET_KEY": "rk_live_51abcdef"},
            logging.WARNING,
            "Stripe is LIVE (STRIPE_SECRET_KEY is a rk_live_ key): payments move real money",
        ),
        (
            "razorpay",
            {**RAZORPAY, "RAZORPAY_KEY_ID": "rzp_test_abcdef"},
            logging.WARNING,
            "Razorpay is in test mode (RAZORPAY_KEY_ID is a rzp_test_ key): no real money moves",
        ),
        (
            "razorpay",
            {**RAZORPAY, "RAZORPAY_KEY_ID": "rzp_live_abcdef"},
            logging.WARNING,
            "Razorpay is LIVE (RAZORPAY_KEY_ID is a rzp_live_ key): payments move real money",
        ),
    ],
)
def test_one_line_says_test_or_live(make_app, caplog, provider, env, level, line):
    with caplog.at_level(logging.INFO, logger="shop"):
        make_app(config={"paymentProvider": provider}, env=env)
    records = _mode_lines(caplog)
    assert [(r.levelno, r.getMessage()) for r in records] == [(level, line)]
    key = env.get("STRIPE_SECRET_KEY") or env["RAZORPAY_KEY_ID"]
    assert not any(key in r.getMessage() for r in caplog.records)  # only the prefix is named


@pytest.mark.parametrize(
    ("provider", "variable", "value", "shown"),
    [
        ("stripe", "STRIPE_SECRET_KEY", "pk_test_oops51abcdef", "starts with pk_test_"),
        ("stripe", "STRIPE_SECRET_KEY", "hello-there", "starts with none of them"),
        ("stripe", "STRIPE_SECRET_KEY", "51abcdef0000", "starts with none of them"),
        ("stripe", "STRIPE_SECRET_KEY", "whsec_abcdef0000", "starts with none of them"),
        ("razorpay", "RAZORPAY_KEY_ID", "rzp_secret_abcdef", "starts with none of them"),
        ("razorpay", "RAZORPAY_KEY_ID", "sk_live_abcdef", "starts with sk_live_"),
    ],
)
def test_a_key_without_a_real_prefix_stops_start_up_naming_the_variable(
    make_app, provider, variable, value, shown
):
    env = {**(STRIPE if provider == "stripe" else RAZORPAY), **ACCOUNT, variable: value}
    env.setdefault("STRIPE_SECRET_KEY", "sk_test_51abcdef")
    env.setdefault("RAZORPAY_KEY_ID", "rzp_test_abcdef")
    with pytest.raises(ConfigError) as exc:
        make_app(config={"paymentProvider": provider}, env=env)
    message = str(exc.value)
    assert message.startswith(f"{variable} is not a ")
    assert shown in message
    assert value not in message  # the key itself is never repeated
    assert "\n" not in message


def test_offline_provider_with_api_keys_says_no_money_moves(make_app, caplog):
    with caplog.at_level(logging.INFO, logger="shop"):
        make_app(env={"SHOP_API_KEYS": "agent:secret-token"})
    (record,) = _mode_lines(caplog)
    assert record.levelno == logging.WARNING
    assert "'test' is offline" in record.getMessage()


def test_demo_mode_says_it_once(make_app, caplog):
    with caplog.at_level(logging.INFO, logger="shop"):
        make_app()
    assert not _mode_lines(caplog)
    assert sum("DEMO MODE" in r.getMessage() for r in caplog.records) == 1


# test_startup_validation.py covers the other variables; this one was missing.
def test_razorpay_without_key_secret_names_the_variable(make_app, monkeypatch):
    monkeypatch.delenv("RAZORPAY_KEY_SECRET", raising=False)
    env = {k: v for k, v in RAZORPAY.items() if k != "RAZORPAY_KEY_SECRET"}
    with pytest.raises(ConfigError) as exc:
        make_app(
            config={"paymentProvider": "razorpay"},
            env={**env, "RAZORPAY_KEY_ID": "rzp_test_abcdef"},
        )
    assert "RAZORPAY_KEY_SECRET" in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("key", "account"),
    [
        ("sk_live_51abcdef", None),  # live: agents' delegated tokens are bound to merchant_id
        ("sk_test_51abcdef", "1A2b3C4d"),  # set, but not an acct_ id
    ],
)
def test_stripe_account_id_is_required_live_and_checked_always(make_app, monkeypatch, key, account):
    monkeypatch.delenv("STRIPE_ACCOUNT_ID", raising=False)
    env = {**STRIPE, "STRIPE_SECRET_KEY": key}
    if account:
        env["STRIPE_ACCOUNT_ID"] = account
    with pytest.raises(ConfigError) as exc:
        make_app(config={"paymentProvider": "stripe"}, env=env)
    assert "STRIPE_ACCOUNT_ID" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_stripe_account_id_fills_merchant_id_and_test_mode_warns_without_it(
    make_app, monkeypatch, caplog
):
    from shop.state import get_state

    monkeypatch.delenv("STRIPE_ACCOUNT_ID", raising=False)
    test_env = {**STRIPE, "STRIPE_SECRET_KEY": "sk_test_51abcdef"}
    with caplog.at_level(logging.WARNING):
        app = make_app(config={"paymentProvider": "stripe"}, env=test_env)
    assert any("STRIPE_ACCOUNT_ID is not set" in r.getMessage() for r in caplog.records)
    live = make_app(
        config={"paymentProvider": "stripe"},
        env={**test_env, **ACCOUNT, "STRIPE_SECRET_KEY": "sk_live_51abcdef"},
    )
    for store, merchant_id in ((app, "acct_unknown"), (live, ACCOUNT["STRIPE_ACCOUNT_ID"])):
        with store.app_context():
            [handler] = get_state().provider.handlers(None)
        assert handler["config"]["merchant_id"] == merchant_id
