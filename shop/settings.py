"""Settings: config.json + environment -> one frozen, validated Settings object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shop.errors import ConfigError
from shop.jsonfile import load_json_file
from shop.money import KNOWN_CURRENCIES

PROVIDERS = ("test", "stripe", "razorpay")
ACP_VERSIONS = ("2026-04-17", "2026-01-30")
DEFAULT_DATABASE_URL = "sqlite:///instance/shop.sqlite3"
DEMO_API_KEY = "demo"

# Secrets by provider: the variables a real provider cannot start without.
PROVIDER_SECRETS = {
    "stripe": ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"),
    "razorpay": ("RAZORPAY_KEY_ID", "RAZORPAY_KEY_SECRET", "RAZORPAY_WEBHOOK_SECRET"),
}


@dataclass(frozen=True, slots=True)
class ShippingOption:
    id: str
    title: str
    description: str
    amount: int
    carrier: str | None = None
    min_days: int | None = None
    max_days: int | None = None


@dataclass(frozen=True, slots=True)
class Coupon:
    code: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    min_subtotal: int = 0
    expires: datetime | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    config_path: str
    products_path: str
    database_url: str
    store_name: str
    store_url: str
    currency: str
    payment_provider: str
    permalink_base: str
    order_webhook_url: str | None
    session_ttl_minutes: int
    shipping: tuple[ShippingOption, ...]
    tax_nexus: Mapping[str, Decimal]
    shipping_taxable: bool
    coupons: Mapping[str, Coupon]
    policies: Mapping[str, Any]
    order_status_url_template: str | None
    feed_basic_auth_user: str | None
    feed_brand: str | None
    acp_versions: tuple[str, ...]
    forter_bearer: bool
    forter_hmac: bool
    blocked_buyers: frozenset[str]
    api_keys: Mapping[str, str]  # token -> key name
    demo_mode: bool
    env: Mapping[str, str] = field(repr=False)  # secrets live here; never logged

    def secret(self, name: str) -> str | None:
        """Return an environment secret, or None when unset or empty."""
        value = self.env.get(name)
        return value or None


def load_settings(env: Mapping[str, str] | None = None,
                  config_overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read config.json (SHOP_CONFIG) and the environment; raise ConfigError on any mistake."""
    env = dict(os.environ if env is None else env)
    config_path = env.get("SHOP_CONFIG") or "config.json"
    data = load_json_file(config_path, "config.json")
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the file must be one JSON object of settings.")
    if config_overrides:
        data = {**data, **config_overrides}
    return _parse(data, config_path, env)


def _parse(data: dict[str, Any], path: str, env: Mapping[str, str]) -> Settings:
    def where(key: str) -> str:
        return f"{path}: field '{key}'"

    currency = data.get("currency", "usd")
    if not isinstance(currency, str) or currency.lower() not in KNOWN_CURRENCIES:
        raise ConfigError(
            f"{where('currency')} is {currency!r}, which is not a known ISO 4217 code; "
            'use a lower-case code such as "usd", "eur", "inr" or "jpy".'
        )
    currency = currency.lower()
    provider = data.get("paymentProvider", "test")
    if provider not in PROVIDERS:
        raise ConfigError(f"{where('paymentProvider')} is {provider!r}; use one of "
                          f"{', '.join(PROVIDERS)}.")
    for name in PROVIDER_SECRETS.get(provider, ()):
        if not env.get(name):
            raise ConfigError(
                f"{where('paymentProvider')} is '{provider}' but the environment variable "
                f"{name} is not set; export it before starting (it never goes in config.json)."
            )
    api_keys = _api_keys(env.get("SHOP_API_KEYS", ""))
    demo_mode = provider == "test" and not api_keys
    if not api_keys and not demo_mode:
        raise ConfigError(
            f"{where('paymentProvider')} is '{provider}' but SHOP_API_KEYS is not set; set it to "
            "'name:token' pairs (e.g. SHOP_API_KEYS=openai:long-random-token) so only your agent "
            "platforms can check out."
        )
    if demo_mode:
        api_keys = {DEMO_API_KEY: "demo"}
    ttl = data.get("sessionTtlMinutes", 60)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 7 * 24 * 60:
        raise ConfigError(f"{where('sessionTtlMinutes')} must be a whole number of minutes "
                          f"between 1 and 10080, got {ttl!r}.")
    versions = (data.get("acp") or {}).get("versions", list(ACP_VERSIONS))
    if not isinstance(versions, list) or not versions or not all(
        isinstance(v, str) for v in versions
    ):
        raise ConfigError(f"{where('acp.versions')} must be a list of API-Version dates, "
                          'e.g. ["2026-04-17"].')
    tax = data.get("tax") or {}
    forter = data.get("forter") or {}
    feed = data.get("feed") or {}
    policies = data.get("policies") or {}
    for key, value in (("tax", tax), ("forter", forter), ("feed", feed), ("policies", policies)):
        if not isinstance(value, dict):
            raise ConfigError(f"{where(key)} must be an object.")
    blocked = data.get("blockedBuyers") or []
    if not isinstance(blocked, list) or not all(isinstance(b, str) for b in blocked):
        raise ConfigError(f"{where('blockedBuyers')} must be a list of emails or phone numbers.")
    store_url = _str(data, "storeUrl", where, "https://shop.example")
    return Settings(
        config_path=path,
        products_path=env.get("SHOP_PRODUCTS") or "products.json",
        database_url=env.get("SHOP_DATABASE_URL") or DEFAULT_DATABASE_URL,
        store_name=_str(data, "storeName", where, "My Store"),
        store_url=store_url,
        currency=currency,
        payment_provider=provider,
        permalink_base=_str(data, "permalinkBase", where, store_url.rstrip("/") + "/orders/"),
        order_webhook_url=data.get("orderWebhookUrl") or None,
        session_ttl_minutes=ttl,
        shipping=tuple(_shipping(data.get("shipping", []), path)),
        tax_nexus=_nexus(tax.get("nexus") or {}, path),
        shipping_taxable=bool(tax.get("shippingTaxable", False)),
        coupons={c.code.upper(): c for c in _coupons(data.get("coupons", []), path)},
        policies=policies,
        order_status_url_template=data.get("orderStatusUrlTemplate") or None,
        feed_basic_auth_user=feed.get("basicAuthUser") or None,
        feed_brand=feed.get("brand") or None,
        acp_versions=tuple(versions),
        forter_bearer=bool(forter.get("bearer", True)),
        forter_hmac=bool(forter.get("hmac", False)),
        blocked_buyers=frozenset(b.strip().lower() for b in blocked),
        api_keys=api_keys,
        demo_mode=demo_mode,
        env=dict(env),
    )


def _str(data: dict[str, Any], key: str, where: Any, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where(key)} must be a non-empty text value.")
    return value


def _api_keys(raw: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, token = part.partition(":")
        if not sep or not name.strip() or not token.strip():
            raise ConfigError(
                "SHOP_API_KEYS must be a comma list of name:token pairs "
                "(e.g. openai:tok1,gemini:tok2); one entry has no ':'."
            )
        keys[token.strip()] = name.strip()
    return keys


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be a whole number ≥ {minimum} (minor units for "
                          f"amounts: 500 = $5.00), got {value!r}.")
    return value


def _shipping(raw: Any, path: str) -> list[ShippingOption]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: field 'shipping' must be a list of options.")
    options, seen = [], set()
    for i, opt in enumerate(raw):
        if not isinstance(opt, dict) or not isinstance(opt.get("id"), str) or not opt["id"]:
            raise ConfigError(f"{path}: shipping option #{i + 1} needs an 'id' text value.")
        where = f"{path}: shipping option '{opt['id']}', field"
        if opt["id"] in seen:
            raise ConfigError(f"{where} 'id' is used twice; give each option its own id.")
        seen.add(opt["id"])
        min_days = opt.get("minDays")
        max_days = opt.get("maxDays")
        options.append(ShippingOption(
            id=opt["id"],
            title=str(opt.get("title") or opt["id"]),
            description=str(opt.get("description") or ""),
            amount=_int(opt.get("amount"), f"{where} 'amount'"),
            carrier=opt.get("carrier"),
            min_days=None if min_days is None else _int(min_days, f"{where} 'minDays'"),
            max_days=None if max_days is None else _int(max_days, f"{where} 'maxDays'"),
        ))
    return options


def _nexus(raw: Any, path: str) -> dict[str, Decimal]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: field 'tax.nexus' must map regions to rates, "
                          'e.g. {"CA": 0.0725}.')
    nexus = {}
    for region, rate in raw.items():
        try:
            value = Decimal(str(rate))
        except InvalidOperation:
            value = Decimal(-1)
        if isinstance(rate, bool) or not Decimal(0) <= value < Decimal(1):
            raise ConfigError(f"{path}: field 'tax.nexus.{region}' must be a rate between 0 "
                              f"and 1 (0.0725 for 7.25%), got {rate!r}.")
        nexus[region.upper()] = value
    return nexus


def _coupons(raw: Any, path: str) -> list[Coupon]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: field 'coupons' must be a list.")
    coupons = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("code"), str) or not c["code"]:
            raise ConfigError(f"{path}: coupon #{i + 1} needs a 'code' text value.")
        where = f"{path}: coupon '{c['code']}', field"
        percent = c.get("percentOff")
        amount = c.get("amountOff")
        if (percent is None) == (amount is None):
            raise ConfigError(f"{where} 'percentOff' or 'amountOff': set exactly one of them.")
        if percent is not None and (
            isinstance(percent, bool) or not isinstance(percent, int | float) or
            not 0 < percent <= 100
        ):
            raise ConfigError(f"{where} 'percentOff' must be a number from 1 to 100.")
        expires = None
        if c.get("expires"):
            try:
                expires = datetime.fromisoformat(str(c["expires"]).replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(f"{where} 'expires' must be a date like "
                                  "2026-12-31 or 2026-12-31T23:59:59Z.") from None
            if expires.tzinfo is None:
                from datetime import UTC

                expires = expires.replace(tzinfo=UTC)
        coupons.append(Coupon(
            code=c["code"],
            percent_off=None if percent is None else Decimal(str(percent)),
            amount_off=None if amount is None else _int(amount, f"{where} 'amountOff'", minimum=1),
            min_subtotal=_int(c.get("minSubtotal", 0), f"{where} 'minSubtotal'"),
            expires=expires,
        ))
    return coupons
