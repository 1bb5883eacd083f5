"""A bad config.json, products.json or environment stops start-up with one clear sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shop.errors import ConfigError
from tests.gunicorn_server import free_port

ROOT = Path(__file__).resolve().parents[1]
DATA_CONFIG = ROOT / "tests" / "data" / "config.json"


def _write(path: Path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _products(shop_files) -> list:
    return json.loads(shop_files["products"].read_text())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.append(dict(p[0])), ["products.json", "'widget'", "used twice"]),
        (lambda p: p[0].update(price=29.99), ["products.json", "'widget'", "'price'", "integer"]),
        (lambda p: p[0].update(price="2999"), ["'widget'", "'price'", "integer"]),
        (lambda p: p[0].pop("price"), ["'widget'", "'price'", "missing"]),
        (lambda p: p[0].update(inventory=-1), ["'widget'", "'inventory'", "negative"]),
        (lambda p: p[2]["variants"][0].update(price=None), ["'shirt'", "'shirt-red'", "'price'"]),
        (lambda p: p[2]["variants"][1].update(id="widget"), ["'widget'", "used twice"]),
        (lambda p: p[0].pop("id"), ["entry #1", "'id'"]),
        (lambda p: p[0].update(condition="broken"), ["'widget'", "'condition'"]),
        # stock of a product with variants is counted per variant: a product number is refused
        (lambda p: p[2].update(inventory=5), ["'shirt'", "'inventory'", "variants"]),
    ],
)
def test_bad_products(make_app, shop_files, mutate, expected):
    products = _products(shop_files)
    mutate(products)
    _write(shop_files["products"], products)
    with pytest.raises(ConfigError) as exc:
        make_app()
    for fragment in expected:
        assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_malformed_products_json_names_line_and_column(make_app, shop_files):
    _write(shop_files["products"], '[\n  {"id": "a", "price": 1,}\n]')
    with pytest.raises(ConfigError) as exc:
        make_app()
    assert "products.json" in str(exc.value)
    assert "line 2, column" in str(exc.value)


def test_malformed_config_json_names_line_and_column(make_app, shop_files):
    _write(shop_files["config"], '{\n "currency": "usd"\n "storeName": "x"}')
    with pytest.raises(ConfigError) as exc:
        make_app()
    assert "config.json" in str(exc.value)
    assert "line 3, column 2" in str(exc.value)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"currency": "usdollars"}, ["'currency'", "ISO 4217"]),
        ({"currency": "xyz"}, ["'currency'"]),
        ({"paymentProvider": "paypal"}, ["'paymentProvider'", "test, stripe, razorpay"]),
        ({"sessionTtlMinutes": 0}, ["'sessionTtlMinutes'"]),
        ({"shipping": [{"id": "x", "amount": 4.5}]}, ["shipping option 'x'", "'amount'"]),
        ({"shipping": []}, ["'shipping'", "physical products"]),
        ({"tax": {"nexus": {"CA": 7.25}}}, ["'tax.nexus.CA'", "between 0"]),
        ({"coupons": [{"code": "A"}]}, ["coupon 'A'", "exactly one"]),
        (
            {"coupons": [{"code": "A", "percentOff": 10, "expires": "soon"}]},
            ["coupon 'A'", "'expires'"],
        ),
    ],
)
def test_bad_config(make_app, config, expected):
    with pytest.raises(ConfigError) as exc:
        make_app(config=config)
    for fragment in expected:
        assert fragment in str(exc.value)


# Each of these once crashed with a traceback or was silently accepted.
@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"acp": ["2026-04-17"]}, "'acp'"),
        ({"acp": {"versions": "2026-04-17"}}, "'acp.versions'"),
        ({"acp": {"versions": ["tomorrow"]}}, "'acp.versions'"),
        ({"acp": {"versions": ["2026-02-30"]}}, "'acp.versions'"),
        ({"acp": {"versions": [20260417]}}, "'acp.versions'"),
        ({"orderWebhookUrl": 5}, "'orderWebhookUrl'"),
        ({"orderWebhookUrl": ["https://merchant.test/orders"]}, "'orderWebhookUrl'"),
        ({"forter": {"bearer": "false"}}, "'forter.bearer'"),
        ({"forter": {"hmac": 1}}, "'forter.hmac'"),
        ({"forter": True}, "'forter'"),
        ({"tax": {"shippingTaxable": "no"}}, "'tax.shippingTaxable'"),
        ({"tax": {"nexus": {"California": 0.0725}}}, "'tax.nexus.California'"),
        ({"tax": {"nexus": {"USA-CA": 0.0725}}}, "'tax.nexus.USA-CA'"),
        ({"tax": {"nexus": {"CA": 0.0725, "us-ca": 0.08}}}, "'tax.nexus.us-ca'"),
        ({"tax": {"nexus": {"CA": "lots"}}}, "'tax.nexus.CA'"),
        ({"tax": {"nexus": ["CA"]}}, "'tax.nexus'"),
        ({"tax": {"homeCountry": "USA"}}, "'tax.homeCountry'"),
        (
            {"coupons": [{"code": "TEN", "percentOff": 10}, {"code": "ten", "amountOff": 100}]},
            "coupon 'ten'",
        ),
        ({"coupons": {"code": "TEN"}}, "'coupons'"),
        ({"coupons": [{"code": "A", "amountOff": 1.5}]}, "'amountOff'"),
        ({"policies": {"termsUrl": 5}}, "'policies.termsUrl'"),
        ({"policies": {"privacyUrl": "ftp://store.test/privacy"}}, "'policies.privacyUrl'"),
        (
            {"policies": {"returnsUrl": {"url": "https://store.test/returns"}}},
            "'policies.returnsUrl'",
        ),
        ({"policies": {"returnWindowDays": "30"}}, "'policies.returnWindowDays'"),
        ({"policies": ["https://store.test/terms"]}, "'policies'"),
        ({"storeName": 5}, "'storeName'"),
        ({"storeUrl": "store.test"}, "'storeUrl'"),
        ({"permalinkBase": 7}, "'permalinkBase'"),
        ({"orderStatusUrlTemplate": False}, "'orderStatusUrlTemplate'"),
        ({"currency": 840}, "'currency'"),
        ({"sessionTtlMinutes": "60"}, "'sessionTtlMinutes'"),
        ({"blockedBuyers": "fraud@example.com"}, "'blockedBuyers'"),
        ({"blockedBuyers": [5]}, "'blockedBuyers'"),
        ({"feed": {"brand": 5}}, "'feed.brand'"),
        ({"feed": {"basicAuthUser": ""}}, "'feed.basicAuthUser'"),
        ({"shipping": {"id": "x"}}, "'shipping'"),
        (
            {"shipping": [{"id": "x", "amount": 100, "minDays": 5, "maxDays": 2}]},
            "shipping option 'x'",
        ),
        ({"shipping": [{"id": "x", "amount": 100, "carrier": 7}]}, "'carrier'"),
        ({"shipping": [{"id": "x"}]}, "'amount'"),
    ],
)
def test_wrong_config_types_are_one_sentence_naming_the_field(make_app, shop_files, config, field):
    with pytest.raises(ConfigError) as exc:
        make_app(config=config)
    message = str(exc.value)
    assert message.startswith(str(shop_files["config"]))
    assert field in message
    assert "\n" not in message


def test_policy_paths_resolve_against_the_store_url(make_app):
    app = make_app(config={"policies": {"termsUrl": "/terms", "returnWindowDays": 14}})
    policies = app.extensions["shop"].settings.policies
    assert policies == {"termsUrl": "https://store.test/terms", "returnWindowDays": 14}


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "nosuchdb://somewhere/shop",
        "postgresql://shop:hunter2@127.0.0.1:1/shop",  # driver missing, or nothing listening
        "{dir}",  # a directory is not a database file
        "{dir}/config.json/shop.sqlite3",  # a file where a directory should be
    ],
)
def test_unusable_database_url_names_shop_database_url(make_app, shop_files, url):
    if url.startswith("{dir}"):
        url = "sqlite:///" + url.format(dir=shop_files["dir"])
    with pytest.raises(ConfigError) as exc:
        make_app(env={"SHOP_DATABASE_URL": url})
    message = str(exc.value)
    assert message.startswith("SHOP_DATABASE_URL")
    assert "\n" not in message
    assert "hunter2" not in message  # a password never reaches the log


def test_real_provider_without_api_keys_refuses(make_app):
    with pytest.raises(ConfigError) as exc:
        make_app(
            config={"paymentProvider": "stripe"},
            env={"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"},
        )
    assert "SHOP_API_KEYS" in str(exc.value)


@pytest.mark.parametrize(
    ("provider", "env", "missing"),
    [
        ("stripe", {"SHOP_API_KEYS": "a:b"}, "STRIPE_SECRET_KEY"),
        (
            "stripe",
            {"SHOP_API_KEYS": "a:b", "STRIPE_SECRET_KEY": "sk_test_1"},
            "STRIPE_WEBHOOK_SECRET",
        ),
        ("razorpay", {"SHOP_API_KEYS": "a:b"}, "RAZORPAY_KEY_ID"),
        (
            "razorpay",
            {"SHOP_API_KEYS": "a:b", "RAZORPAY_KEY_ID": "rzp_test_1", "RAZORPAY_KEY_SECRET": "s"},
            "RAZORPAY_WEBHOOK_SECRET",
        ),
    ],
)
def test_real_provider_without_secret_names_variable(make_app, provider, env, missing):
    with pytest.raises(ConfigError) as exc:
        make_app(config={"paymentProvider": provider}, env=env)
    assert missing in str(exc.value)


def test_bad_api_keys_format(make_app):
    with pytest.raises(ConfigError) as exc:
        make_app(env={"SHOP_API_KEYS": "just-a-token"})
    assert "name:token" in str(exc.value)


def test_demo_key_only_in_demo_mode(make_app):
    app = make_app(env={"SHOP_API_KEYS": "openai:secret-token"})
    response = app.test_client().get(
        "/checkout_sessions/cs_x",
        headers={"Authorization": "Bearer demo", "API-Version": "2026-04-17"},
    )
    assert response.status_code == 401


def test_missing_file(make_app, shop_files):
    shop_files["products"].unlink()
    with pytest.raises(ConfigError) as exc:
        make_app()
    assert "file not found" in str(exc.value)


def _broken_store_env(shop_files) -> dict[str, str]:
    _write(shop_files["config"], '{"currency": "usd", "forter": {"bearer": "false"}}')
    return {
        **os.environ,
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
    }


def test_app_entry_point_prints_one_sentence_and_exits_4(shop_files):
    _write(shop_files["products"], "[{")
    env = {**_broken_store_env(shop_files), "SHOP_CONFIG": str(DATA_CONFIG)}
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4  # gunicorn's APP_LOAD_ERROR
    assert result.stderr.startswith("shop cannot start:")
    assert "Traceback" not in result.stderr
    assert "products.json: invalid JSON at line 1" in result.stderr


@pytest.mark.parametrize("workers", ["1", "3"])
def test_gunicorn_stops_at_once_on_a_broken_config(shop_files, workers):
    """Exit codes other than 3 and 4 make gunicorn respawn the worker forever; 4 halts it.

    With several workers only the first says the sentence and exits 4: a second exit 4
    during the arbiter's halt would make gunicorn itself print a HaltServer traceback.
    """
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "app:app",
            "-b",
            f"127.0.0.1:{free_port()}",
            "--workers",
            workers,
        ],
        cwd=ROOT,
        env=_broken_store_env(shop_files),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert elapsed < 5, f"gunicorn took {elapsed:.1f} s to give up"
    assert "Traceback" not in output, output
    said = [line for line in output.splitlines() if line.startswith("shop cannot start:")]
    assert said == [
        f"shop cannot start: {shop_files['config']}: field 'forter.bearer' must be true or "
        "false without quotes, got 'false' (text)."
    ], output
    assert output.count("Booting worker") == int(workers)  # none respawned
