"""Every key of config.json and products.json is known; docs/configuration.md lists them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shop.config import reference, schema
from shop.config.fields import Fields
from shop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LIVE = {
    "SHOP_API_KEYS": "agent:secret-token",
    "STRIPE_SECRET_KEY": "sk_live_51abcdef",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "STRIPE_ACCOUNT_ID": "acct_1A2b3C4d5E6f7G8h",
}


def _edit_config(shop_files, text_edit) -> None:
    path = shop_files["config"]
    # One key per line, so the sentence's line number can be checked.
    text = json.dumps(json.loads(path.read_text()), indent=2)
    path.write_text(text_edit(text))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_misspelled_payment_provider_stops_start_up(make_app, shop_files):
    # The case: live Stripe keys exported, "paymentprovider" would fall back to "test".
    _edit_config(shop_files, lambda t: t.replace("{", '{\n  "paymentprovider": "stripe",', 1))
    with pytest.raises(ConfigError) as exc:
        make_app(env=LIVE)
    message = str(exc.value)
    line = _line_of(shop_files["config"], "paymentprovider")
    assert message == (
        f"{shop_files['config']}: unknown key 'paymentprovider' at the top level "
        f"(line {line}); did you mean 'paymentProvider'?"
    )


@pytest.mark.parametrize(
    ("edit", "key", "place", "meant"),
    [
        (
            lambda c: c["tax"].update(shipping_taxable=True),
            "shipping_taxable",
            "tax",
            "shippingTaxable",
        ),
        (lambda c: c["shipping"][0].update(mindays=2), "mindays", "shipping option", "minDays"),
        (
            lambda c: c.setdefault("policies", {}).update(returnwindow=30),
            "returnwindow",
            "policies",
            "returnWindowDays",
        ),
        (lambda c: c.setdefault("forter", {}).update(Bearer=True), "Bearer", "forter", "bearer"),
        (
            lambda c: c.update(webhookUrl="https://x.example"),
            "webhookUrl",
            "top level",
            "orderWebhookUrl",
        ),
        (lambda c: c.update(zzz=1), "zzz", "top level", None),
    ],
)
def test_unknown_config_keys_name_the_file_key_place_and_nearest(
    make_app, shop_files, edit, key, place, meant
):
    config = json.loads(shop_files["config"].read_text())
    edit(config)
    shop_files["config"].write_text(json.dumps(config, indent=2))
    with pytest.raises(ConfigError) as exc:
        make_app()
    message = str(exc.value)
    assert message.startswith(f"{shop_files['config']}: unknown key '{key}' ")
    assert place in message
    assert f"line {_line_of(shop_files['config'], key)}" in message
    if meant:
        assert message.endswith(f"did you mean '{meant}'?")
    else:
        assert "the keys allowed here are storeName, storeUrl" in message
    assert "\n" not in message


def test_stock_instead_of_inventory_stops_start_up_instead_of_overselling(make_app, shop_files):
    products = json.loads(shop_files["products"].read_text())
    products[0]["stock"] = products[0].pop("inventory")
    shop_files["products"].write_text(json.dumps(products, indent=2))
    with pytest.raises(ConfigError) as exc:
        make_app()
    line = _line_of(shop_files["products"], '"stock"')
    assert str(exc.value) == (
        f"{shop_files['products']}: unknown key 'stock' in product '{products[0]['id']}' "
        f"(#1.stock, line {line}); did you mean 'inventory'?"
    )


def test_unknown_variant_key_and_products_object_key(make_app, shop_files):
    products = json.loads(shop_files["products"].read_text())
    with_variants = next(i for i, p in enumerate(products) if p.get("variants"))
    products[with_variants]["variants"][1]["Quantity"] = 3
    shop_files["products"].write_text(json.dumps({"products": products}, indent=2))
    with pytest.raises(ConfigError) as exc:
        make_app()
    message = str(exc.value)
    assert "unknown key 'Quantity' in product" in message
    assert f"products[{with_variants}].variants[1].Quantity" in message
    assert message.endswith("did you mean 'inventory'?")

    products[with_variants]["variants"][1].pop("Quantity")
    shop_files["products"].write_text(json.dumps({"products": products, "prodcts": []}))
    with pytest.raises(ConfigError) as exc:
        make_app()
    assert "unknown key 'prodcts' at the top level" in str(exc.value)
    assert str(exc.value).endswith("did you mean 'products'?")


def _example(shape: schema.Shape) -> dict:
    """Build an object holding every key of a shape, from the definitions' examples."""
    out = {}
    for key in shape.keys:
        if key.shape is not None and not key.shape.free_keys:
            inner = _example(key.shape)
            out[key.name] = [inner] if key.type.startswith("list") else inner
        else:
            out[key.name] = key.example
    return out


def test_every_defined_key_is_read_by_the_parser_from_its_example(make_app, shop_files):
    """The definitions' examples make a valid file, so every documented key really works."""
    config = _example(schema.CONFIG)
    config["coupons"][0].pop("percentOff")  # percentOff and amountOff: one or the other
    shop_files["config"].write_text(json.dumps(config))
    product = _example(schema.PRODUCT)
    product["inventory"] = None  # a product with variants counts stock per variant
    plain = {k: v for k, v in _example(schema.PRODUCT).items() if k != "variants"}
    plain["id"] = "plain"
    shop_files["products"].write_text(json.dumps([product, plain]))
    app = make_app(env=LIVE)
    settings = app.extensions["shop"].settings
    assert settings.coupons["WELCOME10"].min_subtotal == 2500
    assert settings.shipping[0].min_days == 3
    assert settings.policies["returnWindowDays"] == 30
    assert app.extensions["shop"].catalog.item("plain").inventory == 25


def test_the_parser_cannot_read_a_key_the_definitions_lack():
    fields = Fields({}, "config.json", shape=schema.CONFIG)
    with pytest.raises(KeyError, match=r"schema\.py"):
        fields.text("undocumentedKey")


def test_configuration_reference_is_generated_from_the_definitions():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == reference.render(), (
        "docs/configuration.md is stale: run `python -m shop.config.reference > "
        "docs/configuration.md`"
    )
    for path in reference.all_key_paths():
        assert f"| `{path}` |" in doc
    for variable in schema.ENVIRONMENT:
        assert f"| `{variable.name}` |" in doc
    # Every key has words, an example and a default; the keys the issue found undocumented too.
    for shape in (schema.CONFIG, schema.PRODUCT):
        for key in _all_keys(shape):
            assert key.doc and key.example is not None and key.default_text, key.name
    for name in (
        "minSubtotal",
        "shippingTaxable",
        "permalinkBase",
        "orderStatusUrlTemplate",
        "returnWindowDays",
        "minDays",
    ):
        assert any(p.endswith(name) for p in reference.all_key_paths()), name


def test_every_variable_the_code_reads_is_documented():
    import re

    read = set()
    for source in (ROOT / "shop").rglob("*.py"):
        read |= set(
            re.findall(
                r"""(?:\benv|os\.environ)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", source.read_text()
            )
        )
        read |= set(re.findall(r"""secret\(\s*["']([A-Z][A-Z0-9_]+)["']""", source.read_text()))
    documented = {v.name for v in schema.ENVIRONMENT}
    assert read - documented == set()


def _all_keys(shape: schema.Shape):
    for key in shape.keys:
        yield key
        if key.shape is not None:
            yield from _all_keys(key.shape)


def test_a_missing_file_names_the_variable_and_the_directory(tmp_path, monkeypatch):
    from shop.config.settings import load_settings

    monkeypatch.chdir(tmp_path)  # the case: a command run from another directory
    with pytest.raises(ConfigError) as exc:
        load_settings({})
    message = str(exc.value)
    assert "SHOP_CONFIG is not set" in message and str(tmp_path) in message
    with pytest.raises(ConfigError) as exc:
        load_settings({"SHOP_CONFIG": "/etc/shop/nope.json"})
    assert "SHOP_CONFIG is '/etc/shop/nope.json'" in str(exc.value)
