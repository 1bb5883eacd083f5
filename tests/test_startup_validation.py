"""A bad config.json, products.json or environment stops start-up with one clear sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _products(shop_files) -> list:
    return json.loads(shop_files["products"].read_text())


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda p: p.append(dict(p[0])), ["products.json", "'widget'", "used twice"]),
    (lambda p: p[0].update(price=29.99), ["products.json", "'widget'", "'price'", "integer"]),
    (lambda p: p[0].update(price="2999"), ["'widget'", "'price'", "integer"]),
    (lambda p: p[0].pop("price"), ["'widget'", "'price'", "missing"]),
    (lambda p: p[0].update(inventory=-1), ["'widget'", "'inventory'", "negative"]),
    (lambda p: p[2]["variants"][0].update(price=None), ["'shirt'", "'shirt-red'", "'price'"]),
    (lambda p: p[2]["variants"][1].update(id="widget"), ["'widget'", "used twice"]),
    (lambda p: p[0].pop("id"), ["entry #1", "'id'"]),
    (lambda p: p[0].update(condition="broken"), ["'widget'", "'condition'"]),
])
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


@pytest.mark.parametrize(("config", "expected"), [
    ({"currency": "usdollars"}, ["'currency'", "ISO 4217"]),
    ({"currency": "xyz"}, ["'currency'"]),
    ({"paymentProvider": "paypal"}, ["'paymentProvider'", "test, stripe, razorpay"]),
    ({"sessionTtlMinutes": 0}, ["'sessionTtlMinutes'"]),
    ({"shipping": [{"id": "x", "amount": 4.5}]}, ["shipping option 'x'", "'amount'"]),
    ({"shipping": []}, ["'shipping'", "physical products"]),
    ({"tax": {"nexus": {"CA": 7.25}}}, ["'tax.nexus.CA'", "between 0"]),
    ({"coupons": [{"code": "A"}]}, ["coupon 'A'", "exactly one"]),
    ({"coupons": [{"code": "A", "percentOff": 10, "expires": "soon"}]},
     ["coupon 'A'", "'expires'"]),
])
def test_bad_config(make_app, config, expected):
    with pytest.raises(ConfigError) as exc:
        make_app(config=config)
    for fragment in expected:
        assert fragment in str(exc.value)


def test_real_provider_without_api_keys_refuses(make_app):
    with pytest.raises(ConfigError) as exc:
        make_app(config={"paymentProvider": "stripe"},
                 env={"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"})
    assert "SHOP_API_KEYS" in str(exc.value)


@pytest.mark.parametrize(("provider", "env", "missing"), [
    ("stripe", {"SHOP_API_KEYS": "a:b"}, "STRIPE_SECRET_KEY"),
    ("stripe", {"SHOP_API_KEYS": "a:b", "STRIPE_SECRET_KEY": "sk_test_1"}, "STRIPE_WEBHOOK_SECRET"),
    ("razorpay", {"SHOP_API_KEYS": "a:b"}, "RAZORPAY_KEY_ID"),
    ("razorpay", {"SHOP_API_KEYS": "a:b", "RAZORPAY_KEY_ID": "rzp_test_1",
                  "RAZORPAY_KEY_SECRET": "s"}, "RAZORPAY_WEBHOOK_SECRET"),
])
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
    response = app.test_client().get("/checkout_sessions/cs_x", headers={
        "Authorization": "Bearer demo", "API-Version": "2026-04-17"})
    assert response.status_code == 401


def test_missing_file(make_app, shop_files):
    shop_files["products"].unlink()
    with pytest.raises(ConfigError) as exc:
        make_app()
    assert "file not found" in str(exc.value)


def test_gunicorn_entry_point_prints_one_sentence(shop_files):
    _write(shop_files["products"], "[{")
    env = {**os.environ, "SHOP_CONFIG": str(shop_files["config"]),
           "SHOP_PRODUCTS": str(shop_files["products"]),
           "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}"}
    result = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("shop cannot start:")
    assert "Traceback" not in result.stderr
    assert "products.json: invalid JSON at line 1" in result.stderr
