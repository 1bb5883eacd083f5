"""Settings: config.json + environment -> one frozen, validated Settings object.

Every key of config.json is read through shop/config/fields.py against its definition in
shop/config/schema.py, so an unknown key, a wrong type or value stops start-up with one
sentence naming the file, the key and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from shop.config.fields import Fields, env_seconds
from shop.config.jsonfile import load_json_file
from shop.config.schema import CONFIG
from shop.config.tax_rules import DEFAULT_TAX_COUNTRY, parse_home_country, parse_nexus
from shop.config.three_ds import ThreeDSConfig, parse_three_ds
from shop.errors import ConfigError
from shop.money import KNOWN_CURRENCIES, provider_takes
from shop.storage.database_url import DEFAULT_DATABASE_URL, check_database_url

PROVIDERS = ("test", "stripe", "razorpay")
# Every released ACP version, newest first; config.json acp.versions may narrow the list.
ACP_VERSIONS = ("2026-04-17", "2026-01-30", "2026-01-16", "2025-12-12", "2025-09-29")
DEMO_API_KEY = "demo"
DEFAULT_BODY_TIMEOUT = 10.0
POLICY_URLS = ("termsUrl", "privacyUrl", "returnsUrl")

# Secrets by provider: the variables a real provider cannot start without.
PROVIDER_SECRETS = {
    "stripe": ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"),
    "razorpay": ("RAZORPAY_KEY_ID", "RAZORPAY_KEY_SECRET", "RAZORPAY_WEBHOOK_SECRET"),
}

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")

# The real prefixes of the keys whose form says test or live money; anything else is a paste
# of the wrong thing (a publishable pk_ key, a webhook secret, "hello").
KEY_PREFIXES = {
    "STRIPE_SECRET_KEY": ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    "RAZORPAY_KEY_ID": ("rzp_live_", "rzp_test_"),
}
_WHERE_KEYS = {
    "STRIPE_SECRET_KEY": "Stripe Dashboard -> Developers -> API keys (the secret key)",
    "RAZORPAY_KEY_ID": "Razorpay Dashboard -> Account & Settings -> API Keys (the Key Id)",
}
_SAFE_PREFIX = re.compile(r"[a-z]{2,5}_(?:test|live)_")


def check_key_form(name: str, value: str) -> None:
    """Raise ConfigError when a provider key does not start with one of its real prefixes."""
    prefixes = KEY_PREFIXES.get(name)
    if prefixes is None or value.startswith(prefixes):
        return
    seen = _SAFE_PREFIX.match(value)  # only a prefix is ever shown, never the key
    starts = f"starts with {seen[0]}" if seen else "starts with none of them"
    raise ConfigError(
        f"{name} is not a {name.split('_')[0].title()} key: it must start with "
        f"{', '.join(prefixes[:-1])} or {prefixes[-1]}, and it {starts}; copy it from "
        f"{_WHERE_KEYS[name]} into the environment."
    )


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
    # Keys are ISO 3166-2 ("US-CA"), or "DE-*" for a whole country; see shop/tax.py.
    tax_nexus: Mapping[str, Decimal]
    shipping_taxable: bool
    coupons: Mapping[str, Coupon]
    policies: Mapping[str, Any]  # policy URLs resolved against storeUrl
    order_status_url_template: str | None
    feed_basic_auth_user: str | None
    feed_brand: str | None
    acp_versions: tuple[str, ...]
    acp_body_only_signatures: bool
    forter_bearer: bool
    forter_hmac: bool
    blocked_buyers: frozenset[str]
    api_keys: Mapping[str, str]  # token -> key name
    demo_mode: bool
    env: Mapping[str, str] = field(repr=False)  # secrets live here; never logged
    tax_country: str = DEFAULT_TAX_COUNTRY  # the country whose regions bare nexus keys name
    body_timeout: float = DEFAULT_BODY_TIMEOUT  # seconds for a whole request body
    three_ds: ThreeDSConfig | None = None  # config.json threeDS (shop/config/three_ds.py)

    def secret(self, name: str) -> str | None:
        """Return an environment secret, or None when unset or empty."""
        value = self.env.get(name)
        return value or None


def load_settings(
    env: Mapping[str, str] | None = None, config_overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read config.json (SHOP_CONFIG) and the environment; raise ConfigError on any mistake."""
    env = dict(os.environ if env is None else env)
    config_path = env.get("SHOP_CONFIG") or "config.json"
    data = load_json_file(config_path, "config.json", "SHOP_CONFIG")
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the file must be one JSON object of settings.")
    if config_overrides:
        data = {**data, **config_overrides}
    return _parse(Fields(data, config_path, shape=CONFIG), env)


def _parse(cfg: Fields, env: Mapping[str, str]) -> Settings:
    path = cfg.path
    currency = cfg.text("currency", example="usd") or "usd"
    if currency.lower() not in KNOWN_CURRENCIES:
        raise cfg.error(
            "currency",
            f"is {currency!r}, which is not a known ISO 4217 code; "
            'use a lower-case code such as "usd", "eur", "inr" or "jpy".',
        )
    provider = cfg.text("paymentProvider") or "test"
    if provider not in PROVIDERS:
        raise cfg.error("paymentProvider", f"is {provider!r}; use one of {', '.join(PROVIDERS)}.")
    if not provider_takes(provider, currency):
        raise cfg.error(
            "currency",
            f"is {currency!r}, which {provider.capitalize()} does not charge in; choose a "
            f"currency your {provider.capitalize()} account takes, or another paymentProvider.",
        )
    for name in PROVIDER_SECRETS.get(provider, ()):
        if not env.get(name):
            raise cfg.error(
                "paymentProvider",
                f"is '{provider}' but the environment variable "
                f"{name} is not set; export it before starting (it never goes in "
                "config.json).",
            )
    for name in PROVIDER_SECRETS.get(provider, ()):
        check_key_form(name, env[name])
    api_keys = _api_keys(env.get("SHOP_API_KEYS", ""))
    demo_mode = provider == "test" and not api_keys
    if not api_keys and not demo_mode:
        raise cfg.error(
            "paymentProvider",
            f"is '{provider}' but SHOP_API_KEYS is not set; set "
            "it to 'name:token' pairs (e.g. SHOP_API_KEYS=openai:long-random-token) "
            "so only your agent platforms can check out.",
        )
    if demo_mode:
        api_keys = {DEMO_API_KEY: "demo"}
    store_url = cfg.url("storeUrl") or ""
    tax = cfg.obj("tax")
    tax_country = parse_home_country(tax)
    forter = cfg.obj("forter")
    feed = cfg.obj("feed")
    blocked = cfg.text_list("blockedBuyers", example='["fraud@example.com", "+15550100"]')
    return Settings(
        config_path=path,
        products_path=env.get("SHOP_PRODUCTS") or "products.json",
        database_url=check_database_url(env.get("SHOP_DATABASE_URL") or DEFAULT_DATABASE_URL),
        store_name=cfg.text("storeName") or "My Store",
        store_url=store_url,
        currency=currency.lower(),
        payment_provider=provider,
        permalink_base=cfg.url("permalinkBase", store_url.rstrip("/") + "/orders/") or "",
        # The scheme is checked where the sink is built (shop/orders.py).
        order_webhook_url=cfg.text("orderWebhookUrl", example="https://example.com/hooks/orders"),
        session_ttl_minutes=cfg.integer(
            "sessionTtlMinutes", minimum=1, maximum=7 * 24 * 60, unit=" (minutes)"
        )
        or 60,
        shipping=tuple(_shipping(cfg)),
        tax_nexus=parse_nexus(tax.obj("nexus"), tax_country),
        tax_country=tax_country,
        shipping_taxable=tax.boolean("shippingTaxable"),
        coupons={c.code.upper(): c for c in _coupons(cfg)},
        policies=_policies(cfg.obj("policies"), store_url),
        order_status_url_template=cfg.text(
            "orderStatusUrlTemplate", example="https://example.com/orders/{order_id}"
        ),
        feed_basic_auth_user=feed.text("basicAuthUser"),
        feed_brand=feed.text("brand"),
        acp_versions=_acp_versions(cfg.obj("acp")),
        acp_body_only_signatures=cfg.obj("acp").boolean("bodyOnlySignatures"),
        forter_bearer=forter.boolean("bearer"),
        forter_hmac=forter.boolean("hmac"),
        blocked_buyers=frozenset(b.strip().lower() for b in blocked),
        api_keys=api_keys,
        demo_mode=demo_mode,
        env=dict(env),
        three_ds=parse_three_ds(cfg),
        body_timeout=_body_timeout(env),
    )


def _body_timeout(env: Mapping[str, str]) -> float:
    """Return SHOP_BODY_TIMEOUT: seconds a client may take to send a whole body (default 10)."""
    return env_seconds(
        env,
        "SHOP_BODY_TIMEOUT",
        DEFAULT_BODY_TIMEOUT,
        0.1,
        300,
        "how long a client may take to send a whole request body",
    )


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


def _acp_versions(acp: Fields) -> tuple[str, ...]:
    versions = acp.text_list("versions", example='["2026-04-17"]') or ACP_VERSIONS
    for version in versions:
        try:
            valid = bool(_VERSION.fullmatch(version)) and bool(date.fromisoformat(version))
        except ValueError:
            valid = False
        if not valid:
            raise acp.error(
                "versions",
                f"holds {version!r}, which is not an API-Version date; "
                'list dates like ["2026-04-17", "2026-01-30"].',
            )
        if version not in ACP_VERSIONS:
            raise acp.error(
                "versions",
                f"holds {version!r}, which is not a released ACP version this store speaks; "
                f"list some of {', '.join(ACP_VERSIONS)}.",
            )
    return tuple(versions)


def _policies(policies: Fields, store_url: str) -> dict[str, Any]:
    resolved = policies.mapping()
    for key in POLICY_URLS:
        resolved[key] = policies.url(key, base=store_url)
    resolved["returnWindowDays"] = policies.integer(
        "returnWindowDays", maximum=3650, unit=" (days)"
    )
    return {k: v for k, v in resolved.items() if v is not None}


def _shipping(cfg: Fields) -> list[ShippingOption]:
    options, seen = [], set()
    for i, opt in enumerate(cfg.items("shipping")):
        if not isinstance(opt, dict) or not isinstance(opt.get("id"), str) or not opt["id"]:
            raise ConfigError(f"{cfg.path}: shipping option #{i + 1} needs an 'id' text value.")
        option = cfg.entry("shipping", i, label=f"shipping option '{opt['id']}', ")
        if opt["id"] in seen:
            raise option.error("id", "is used twice; give each option its own id.")
        seen.add(opt["id"])
        min_days = option.integer("minDays")
        max_days = option.integer("maxDays")
        if min_days is not None and max_days is not None and min_days > max_days:
            raise option.error("minDays", f"({min_days}) is more than maxDays ({max_days}).")
        amount = option.integer("amount", unit=" in minor units (500 = $5.00)")
        if amount is None:
            raise option.error(
                "amount", "is missing; set the price in minor units (500 = $5.00, 0 for free)."
            )
        options.append(
            ShippingOption(
                id=opt["id"],
                title=option.text("title", opt["id"]) or opt["id"],
                description=option.text("description", allow_empty=True) or "",
                amount=amount,
                carrier=option.text("carrier"),
                min_days=min_days,
                max_days=max_days,
            )
        )
    return options


def _coupons(cfg: Fields) -> list[Coupon]:
    coupons: list[Coupon] = []
    seen: set[str] = set()
    for i, c in enumerate(cfg.items("coupons")):
        if not isinstance(c, dict) or not isinstance(c.get("code"), str) or not c["code"].strip():
            raise ConfigError(f"{cfg.path}: coupon #{i + 1} needs a 'code' text value.")
        coupon = cfg.entry("coupons", i, label=f"coupon '{c['code']}', ")
        if c["code"].strip().upper() in seen:
            raise coupon.error(
                "code", "is listed twice (codes ignore case); keep one entry per code."
            )
        seen.add(c["code"].strip().upper())
        percent = c.get("percentOff")
        amount = c.get("amountOff")
        if (percent is None) == (amount is None):
            raise ConfigError(
                f"{cfg.path}: coupon '{c['code']}' needs exactly one of the fields "
                "'percentOff' (10 for 10%) or 'amountOff' (minor units)."
            )
        if percent is not None and (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not 0 < percent <= 100
        ):
            raise coupon.error("percentOff", f"must be a number from 1 to 100, got {percent!r}.")
        coupons.append(
            Coupon(
                code=c["code"].strip(),
                percent_off=None if percent is None else Decimal(str(percent)),
                amount_off=coupon.integer(
                    "amountOff", minimum=1, unit=" in minor units (500 = $5.00)"
                ),
                min_subtotal=coupon.integer("minSubtotal", unit=" in minor units") or 0,
                expires=_expiry(coupon),
            )
        )
    return coupons


def _expiry(coupon: Fields) -> datetime | None:
    raw = coupon.raw("expires")
    if raw is None:
        return None
    try:
        expires = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise coupon.error(
            "expires", "must be a date like 2026-12-31 or 2026-12-31T23:59:59Z."
        ) from None
    return expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)
