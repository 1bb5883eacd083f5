"""The one definition of every key of config.json and products.json, and every variable.

The parser reads keys through these shapes (`Fields` refuses a key that is not here, and
takes its default from here), the unknown-key sentence names the nearest key from here, and
docs/configuration.md is rendered from here (shop/config/reference.py; a test fails when the
file and this module disagree). Add a key here first, then read it in settings or catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_DEFAULT: Any = None


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a JSON object: its type, default, an example value, and what it changes."""

    name: str
    type: str
    doc: str
    example: Any = None
    default: Any = NO_DEFAULT
    default_doc: str = ""  # the default in words, when it is computed or absent means "off"
    shape: Shape | None = None  # the fields of a nested object, or of each entry of a list
    required: bool = False
    also: tuple[str, ...] = ()  # words merchants write for this key ("stock" for inventory)

    @property
    def default_text(self) -> str:
        """Return the default as the reference shows it."""
        if self.default_doc:
            return self.default_doc
        if self.required:
            return "required"
        if self.default is None:
            return "not set"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, str):
            return f'"{self.default}"'
        return str(self.default)


@dataclass(frozen=True, slots=True)
class Shape:
    """An object's known keys; `free_keys` describes an object whose keys are data."""

    title: str
    keys: tuple[Key, ...] = ()
    free_keys: str = ""

    def key(self, name: str) -> Key | None:
        """Return the Key called `name`, or None."""
        return next((k for k in self.keys if k.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    def meant(self, word: str) -> str | None:
        """Return the key whose usual other name is `word` (any case), or None."""
        return next((k.name for k in self.keys if word.lower() in k.also), None)


_STOCK_WORDS = ("stock", "quantity", "qty", "count", "available")
_PRICE_WORDS = ("cost", "amount", "unitprice", "unit_price")

SHIPPING_OPTION = Shape(
    "a shipping option",
    (
        Key("id", "text", "The option's id, which agents select.", "standard", required=True),
        Key("title", "text", "Shown to the buyer.", "Standard shipping", default_doc="the id"),
        Key("description", "text", "A line under the title.", "USPS Ground", default=""),
        Key("carrier", "text", "The carrier's name, shown in ACP fulfillment options.", "USPS"),
        Key(
            "amount",
            "whole number (minor units)",
            "The price of shipping: 500 = $5.00, 0 = free.",
            500,
            required=True,
        ),
        Key("minDays", "whole number", "Earliest delivery, in days, for the estimate.", 3),
        Key("maxDays", "whole number", "Latest delivery, in days (≥ minDays).", 5),
    ),
)

TAX = Shape(
    "tax",
    (
        Key(
            "homeCountry",
            "text (ISO 3166-1)",
            'The country whose regions bare nexus keys name: with "US", "CA" is California.',
            "US",
            default="US",
        ),
        Key(
            "nexus",
            "object: region -> rate",
            'Where you collect tax and at what rate: "CA" (a region of homeCountry), "US-CA" '
            'or "CA-ON" (ISO 3166-2), "DE-*" (a whole country). Rates are decimals: 0.0725 = '
            "7.25%, rounded half-up per line. An address elsewhere pays no tax.",
            {"CA": 0.0725, "NY": 0.04},
            default_doc="no tax anywhere",
            shape=Shape("tax.nexus", free_keys="region codes"),
        ),
        Key(
            "shippingTaxable",
            "true/false",
            "Whether shipping is taxed at the address's rate too.",
            False,
            default=False,
        ),
    ),
)

COUPON = Shape(
    "a coupon",
    (
        Key("code", "text", "What the buyer types (any case).", "WELCOME10", required=True),
        Key(
            "percentOff",
            "number 1-100",
            "Percent off the subtotal. Give this or amountOff, not both.",
            10,
        ),
        Key(
            "amountOff",
            "whole number (minor units)",
            "A fixed amount off: 500 = $5.00. Give this or percentOff, not both.",
            500,
        ),
        Key(
            "minSubtotal",
            "whole number (minor units)",
            "The coupon applies only when the subtotal is at least this: 2500 = $25.00.",
            2500,
            default=0,
        ),
        Key(
            "expires",
            "date or date-time",
            "After this moment the coupon is refused (coupon_expired). A date without a zone is "
            "UTC.",
            "2026-12-31T23:59:59Z",
            default_doc="never",
        ),
    ),
)

POLICIES = Shape(
    "policies",
    (
        Key(
            "termsUrl",
            "URL or path",
            'The terms of sale, sent to agents as an ACP link; a path such as "/terms" is '
            "resolved against storeUrl.",
            "https://harborgoods.example/terms",
        ),
        Key("privacyUrl", "URL or path", "The privacy policy (ACP link).", "/privacy"),
        Key("returnsUrl", "URL or path", "The returns policy (ACP link).", "/returns"),
        Key(
            "returnWindowDays",
            "whole number (days)",
            "How many days a buyer has to return an item, shown with the returns policy.",
            30,
        ),
    ),
)

FEED = Shape(
    "feed",
    (
        Key(
            "basicAuthUser",
            "text",
            "Makes the product feeds private: this user name with the password in FEED_PASSWORD.",
            "feeds",
            default_doc="feeds are public",
        ),
        Key(
            "brand",
            "text",
            "The brand of products that have no brand of their own (g:brand, CSV Vendor).",
            "Harbor Goods",
        ),
    ),
)

ACP = Shape(
    "acp",
    (
        Key(
            "versions",
            "list of dates",
            "The API-Version values the store accepts (each read and answered in its own "
            "shapes); others answer 400 with the supported list.",
            ["2026-04-17", "2026-01-30"],
            default_doc='every released version: ["2026-04-17", "2026-01-30", "2026-01-16", '
            '"2025-12-12", "2025-09-29"]',
        ),
        Key(
            "bodyOnlySignatures",
            "true/false",
            "With ACP_SIGNING_SECRET set, also accept a Signature over the body alone. Such a "
            "signature does not bind the Timestamp, so a captured request can be replayed; "
            "turn on only for an agent platform that cannot sign the timestamp.",
            False,
            default=False,
        ),
    ),
)

FORTER = Shape(
    "forter",
    (
        Key(
            "bearer",
            "true/false",
            "Forter's calls must carry Authorization: Bearer FORTER_WEBHOOK_SECRET.",
            True,
            default=True,
        ),
        Key(
            "hmac",
            "true/false",
            "Forter's calls must carry the <store-name>-signature HMAC of the body.",
            False,
            default=False,
        ),
    ),
)

THREE_DS = Shape(
    "threeDS",
    (
        Key("acquirerBin", "text (≤ 11)", "Your acquirer's BIN for 3-D Secure.", "424242"),
        Key(
            "acquirerCountry",
            "text (ISO 3166-1 alpha-2)",
            "Your acquirer's country, upper-case.",
            "GB",
        ),
        Key(
            "acquirerMerchantId",
            "text (≤ 35)",
            "The merchant id your acquirer gave you.",
            "merchant_123",
        ),
        Key("merchantName", "text (≤ 40)", "Your name as the acquirer has it.", "Harbor Goods"),
        Key(
            "requestorId",
            "text (≤ 35)",
            "3DS requestor id, if the directory server needs one.",
            "requestor_42",
        ),
        Key(
            "challenge",
            "preferred | mandated",
            "Ask the issuer for a challenge flow (the issuer decides).",
            "preferred",
        ),
    ),
)

CONFIG = Shape(
    "config.json",
    (
        Key(
            "storeName",
            "text",
            "Shown in feeds and links; also names the Forter signature header "
            "(harbor-goods-signature).",
            "Harbor Goods",
            default="My Store",
        ),
        Key(
            "storeUrl",
            "URL",
            "Your shop's public address: feeds, links, and the base of relative policy paths.",
            "https://harborgoods.example",
            default="https://shop.example",
        ),
        Key(
            "currency",
            "text (ISO 4217)",
            "The one currency you sell in, lower-case; amounts are in its minor units "
            "(cents; none for jpy).",
            "usd",
            default="usd",
        ),
        Key(
            "paymentProvider",
            "test | stripe | razorpay",
            "Who takes the money. test is offline: the card token decides and no money moves. "
            "stripe and razorpay need their keys in the environment and SHOP_API_KEYS.",
            "stripe",
            default="test",
            also=("provider", "payment", "gateway"),
        ),
        Key(
            "permalinkBase",
            "URL",
            "Order links sent to agents and in the order payload: permalinkBase + order id.",
            "https://harborgoods.example/orders/",
            default_doc="storeUrl + /orders/",
        ),
        Key(
            "orderWebhookUrl",
            "URL",
            "Where each paid order is POSTed (signed with ORDER_WEBHOOK_SECRET). Without it "
            "orders are only logged, with a warning per order.",
            "https://harborgoods.example/hooks/orders",
            default_doc="not set: orders are only logged",
            also=("webhookurl", "webhook", "orderurl"),
        ),
        Key(
            "sessionTtlMinutes",
            "whole number 1-10080",
            "A checkout session expires this many minutes after it was opened; expired "
            "sessions are deleted with the buyer's details.",
            60,
            default=60,
        ),
        Key(
            "shipping",
            "list of shipping options",
            "What agents can choose for physical goods; a digital-only cart gets a free "
            '"digital" option. Required when products.json has physical products.',
            [
                {
                    "id": "standard",
                    "title": "Standard shipping",
                    "description": "USPS Ground, 3-5 business days",
                    "carrier": "USPS",
                    "amount": 500,
                    "minDays": 3,
                    "maxDays": 5,
                }
            ],
            default_doc="none",
            shape=SHIPPING_OPTION,
        ),
        Key(
            "tax",
            "object",
            "Sales tax by region (see Tax by region in the README).",
            {"homeCountry": "US", "nexus": {"CA": 0.0725}, "shippingTaxable": False},
            default_doc="no tax",
            shape=TAX,
        ),
        Key(
            "coupons",
            "list of coupons",
            "Discount codes agents may apply.",
            [{"code": "FIVEOFF", "amountOff": 500, "minSubtotal": 2500}],
            default_doc="none",
            shape=COUPON,
        ),
        Key(
            "policies",
            "object",
            "Links to your policies, sent to agents with every session.",
            {"termsUrl": "/terms", "returnsUrl": "/returns", "returnWindowDays": 30},
            default_doc="no links",
            shape=POLICIES,
        ),
        Key(
            "orderStatusUrlTemplate",
            "text with {order_id}",
            "Where a buyer follows an order, sent to the agent platform with order events; "
            "{order_id} is replaced by the order id.",
            "https://harborgoods.example/orders/{order_id}",
        ),
        Key(
            "feed",
            "object",
            "Product feed settings.",
            {"brand": "Harbor Goods"},
            default_doc="see its keys",
            shape=FEED,
        ),
        Key(
            "acp",
            "object",
            "Agentic Commerce Protocol settings.",
            {"versions": ["2026-04-17"]},
            default_doc="see its keys",
            shape=ACP,
        ),
        Key(
            "forter",
            "object",
            "Which proof Forter's calls to /api/* must carry (the secret is "
            "FORTER_WEBHOOK_SECRET).",
            {"bearer": True, "hmac": False},
            default_doc="see its keys",
            shape=FORTER,
        ),
        Key(
            "blockedBuyers",
            "list of text",
            "Emails or phone numbers the Forter account lookup answers as blocked.",
            ["fraudster@example.com"],
            default_doc="none",
        ),
        Key(
            "threeDS",
            "object",
            "Acquirer details for 3-D Secure done by the agent's side (ACP 2026-04-17). With "
            "them the card handler offers 3DS and a card that needs it answers "
            "authentication_required; without them such a card is declined (requires_3ds).",
            {
                "acquirerBin": "424242",
                "acquirerCountry": "GB",
                "acquirerMerchantId": "merchant_123",
                "merchantName": "Harbor Goods",
            },
            default_doc="not set: no 3-D Secure",
            shape=THREE_DS,
        ),
    ),
)

VARIANT = Shape(
    "a variant",
    (
        Key(
            "id",
            "text",
            "The id agents buy the variant by; unique in the file.",
            "mug-navy",
            required=True,
        ),
        Key("title", "text", "The variant's name.", "Enamel Camp Mug (Navy)", default_doc="the id"),
        Key(
            "price",
            "whole number (minor units)",
            "The variant's price: 1800 = $18.00.",
            1800,
            default_doc="the product's price",
            also=_PRICE_WORDS,
        ),
        Key(
            "inventory",
            "whole number or null",
            "Stock of this variant: seeds the live count; changing it later restocks; null = "
            "unlimited.",
            40,
            default_doc="null (unlimited)",
            also=_STOCK_WORDS,
        ),
        Key(
            "options",
            "object: name -> text",
            "What tells variants apart, e.g. colour and size.",
            {"Color": "Navy"},
            default_doc="none",
            shape=Shape("options", free_keys="option names"),
        ),
        Key("sku", "text", "Your stock-keeping unit (feeds).", "MUG-NVY"),
        Key("gtin", "text", "The barcode number (feeds).", "0850001234585"),
        Key(
            "image",
            "URL",
            "The variant's own picture.",
            "https://harborgoods.example/mug.jpg",
            default_doc="the product's first image",
        ),
        Key("grams", "whole number", "Weight in grams (Shopify CSV).", 220),
    ),
)

PRODUCT = Shape(
    "a product",
    (
        Key(
            "id",
            "text",
            "The id agents buy the product by (when it has no variants); unique.",
            "canvas-tote",
            required=True,
        ),
        Key("title", "text", "The product's name.", "Waxed Canvas Tote", required=True),
        Key("description", "text", "Shown in feeds.", "A sturdy waxed-canvas tote.", default=""),
        Key(
            "url",
            "URL",
            "The product's page on your site.",
            "https://harborgoods.example/products/canvas-tote",
            default="",
        ),
        Key(
            "images",
            "list of URLs",
            "Pictures, the first is the main one.",
            ["https://harborgoods.example/images/canvas-tote.jpg"],
            default_doc="none",
        ),
        Key("brand", "text", "Brand (feeds); feed.brand when absent.", "Harbor Goods"),
        Key("gtin", "text", "The barcode number (feeds).", "0850001234561"),
        Key(
            "category",
            "text",
            'A taxonomy path ("Media > Books") or free text ("Hardware"), for feeds.',
            "Apparel & Accessories > Handbags",
        ),
        Key("condition", "new | refurbished | used", "For feeds.", "new", default="new"),
        Key(
            "price",
            "whole number (minor units)",
            "The price: 4800 = $48.00. Required unless every variant has its own price.",
            4800,
            default_doc="required unless every variant has a price",
            also=_PRICE_WORDS,
        ),
        Key(
            "inventory",
            "whole number or null",
            "Stock (products without variants): seeds the live count; changing the number "
            "later restocks; null = unlimited (digital goods, licenses).",
            25,
            default_doc="null (unlimited)",
            also=_STOCK_WORDS,
        ),
        Key(
            "digital",
            "true/false",
            "Nothing to ship: needs no address or shipping option.",
            False,
            default=False,
        ),
        Key("taxCode", "text", "Your tax category code, passed through to feeds.", "P0000000"),
        Key("grams", "whole number", "Weight in grams (Shopify CSV).", 680),
        Key("tags", "list of text", "Free tags (Shopify CSV).", ["bags"], default_doc="none"),
        Key(
            "variants",
            "list of variants",
            "Sizes, colours …: with variants, each variant is sold by its own id and counts its "
            "own inventory.",
            [{"id": "canvas-tote-olive", "options": {"Color": "Olive"}, "inventory": 10}],
            default_doc="none",
            shape=VARIANT,
        ),
    ),
)

# products.json may be a list of products, or an object holding that list.
PRODUCTS_FILE = Shape(
    "products.json",
    (Key("products", "list of products", "The catalog.", [], required=True, shape=PRODUCT),),
)


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: who needs it and what it changes."""

    name: str
    needed: str
    doc: str
    secret: bool = True


ENVIRONMENT = (
    Variable(
        "SHOP_API_KEYS",
        "a real payment provider",
        "Bearer tokens agents use, as name:token pairs separated by commas "
        "(openai:long-random-token,gemini:other-token). The name scopes idempotency keys. "
        "Without it and with paymentProvider test the store runs in demo mode (key demo).",
    ),
    Variable(
        "SHOP_CONFIG",
        "optional",
        "Path of config.json (default: config.json in the directory the store starts in).",
        secret=False,
    ),
    Variable(
        "SHOP_PRODUCTS",
        "optional",
        "Path of products.json (default: products.json in the directory the store starts in).",
        secret=False,
    ),
    Variable(
        "SHOP_DATABASE_URL",
        "optional",
        "Where sessions, idempotency records, stock and "
        "the order outbox live: sqlite:////var/lib/shop/shop.sqlite3 or "
        "postgresql://user:password@host/db (default sqlite:///instance/shop.sqlite3).",
    ),
    Variable(
        "ORDER_WEBHOOK_SECRET",
        "recommended with orderWebhookUrl",
        "Signs each order POSTed to orderWebhookUrl (Signature: base64 HMAC-SHA256 of the "
        "body). Commands that send orders refuse to send them unsigned without it.",
    ),
    Variable(
        "ORDER_WEBHOOK_TIMEOUT",
        "optional",
        "Seconds to wait for your order receiver (default 10).",
        secret=False,
    ),
    Variable(
        "ORDER_SWEEP_SECONDS",
        "optional",
        "How often each worker retries due order deliveries, in seconds.",
        secret=False,
    ),
    Variable(
        "SHOP_PURGE_SECONDS",
        "optional",
        "How often each worker forgets expired sessions and gives the space back, in the "
        "background, in seconds (default 300).",
        secret=False,
    ),
    Variable(
        "SHOP_BODY_TIMEOUT",
        "optional",
        "Seconds a client may take to send a whole request body before the store answers "
        "400 (default 10). Behind the shipped nginx site bodies arrive whole, so it matters "
        "only without nginx.",
        secret=False,
    ),
    Variable(
        "SHOP_SERVING",
        "set by gunicorn.conf.py",
        "Marks workers that join a running store (a failing one then does not stop the "
        "others); never set it yourself.",
        secret=False,
    ),
    Variable(
        "SHOP_MADE_METRICS_DIR",
        "set by gunicorn.conf.py",
        "The PROMETHEUS_MULTIPROC_DIR gunicorn.conf.py made, so it is removed when gunicorn "
        "stops, also after a reload; never set it yourself.",
        secret=False,
    ),
    Variable(
        "STRIPE_SECRET_KEY",
        "paymentProvider stripe",
        "sk_live_… / sk_test_… (or a restricted rk_live_… / rk_test_… key); any other "
        "value stops start-up. The prefix decides whether money is real.",
    ),
    Variable(
        "STRIPE_WEBHOOK_SECRET",
        "paymentProvider stripe",
        "The whsec_… of your Stripe webhook endpoint (/webhooks/stripe).",
    ),
    Variable(
        "STRIPE_ACCOUNT_ID",
        "stripe with a live key",
        "Your acct_… id, advertised to agents as the card handler's merchant_id.",
        secret=False,
    ),
    Variable(
        "STRIPE_API_VERSION",
        "optional",
        "The Stripe API version for Shared Payment Token calls only (default "
        "2026-04-22.preview, the preview that defines them); card tokens and PaymentMethods "
        "go out under the stripe library's own version.",
        secret=False,
    ),
    Variable(
        "TEST_WEBHOOK_SECRET",
        "paymentProvider test, reachable by others",
        "Signs /webhooks/test events (X-Test-Signature: hex HMAC-SHA256 of the body). Unset: "
        "the documented demo secret demo-webhook-secret, which anyone can use — set your own "
        "on any store others can reach.",
    ),
    Variable(
        "STRIPE_API_BASE", "tests only", "Another Stripe API address (a local fake).", secret=False
    ),
    Variable(
        "RAZORPAY_KEY_ID",
        "paymentProvider razorpay",
        "rzp_live_… / rzp_test_…; any other value stops start-up.",
        secret=False,
    ),
    Variable("RAZORPAY_KEY_SECRET", "paymentProvider razorpay", "The key's secret."),
    Variable(
        "RAZORPAY_WEBHOOK_SECRET",
        "paymentProvider razorpay",
        "The secret you chose for the /webhooks/razorpay webhook.",
    ),
    Variable(
        "RAZORPAY_API_BASE",
        "tests only",
        "Another Razorpay API address (a local fake).",
        secret=False,
    ),
    Variable(
        "FORTER_WEBHOOK_SECRET",
        "the Forter endpoints",
        "Bearer token and HMAC key of Forter's calls to /api/*; demo in demo mode.",
    ),
    Variable("FEED_PASSWORD", "feed.basicAuthUser", "The password of private feeds."),
    Variable(
        "ACP_SIGNING_SECRET",
        "optional",
        "When set, ACP requests must carry a valid Signature and Timestamp.",
    ),
    Variable(
        "ACP_WEBHOOK_URL",
        "optional, with ACP_WEBHOOK_SECRET",
        "Where the agent platform hears about orders (order_create / order_update).",
        secret=False,
    ),
    Variable(
        "ACP_WEBHOOK_SECRET",
        "optional, with ACP_WEBHOOK_URL",
        "Signs those events (Merchant-Signature).",
    ),
    Variable(
        "SHOP_METRICS_TOKEN",
        "optional",
        "Lets a scraper that is not on loopback read /metrics with 'Authorization: Bearer "
        "<token>'; without it /metrics answers loopback only.",
    ),
    Variable(
        "SHOP_ADMIN_TOKEN",
        "the /status page",
        "The sign-in token of the merchant's /status page (random, 16 characters or more); "
        "without it "
        "the page is off.",
    ),
    Variable(
        "SHOP_LOG_FORMAT",
        "optional",
        "json: one JSON line per request and per business event (no tokens, card data or "
        "addresses); anything else or unset: plain text lines.",
        secret=False,
    ),
    Variable(
        "PROMETHEUS_MULTIPROC_DIR",
        "set by gunicorn.conf.py",
        "The directory where each gunicorn worker writes its metrics so every scrape adds "
        "them up; gunicorn.conf.py sets and cleans it, set it yourself only to move it.",
        secret=False,
    ),
)

# Variables whose names start like ours: a misspelled one is named by `check`.
ENV_PREFIXES = ("SHOP_", "ORDER_", "STRIPE_", "RAZORPAY_", "FORTER_", "FEED_", "ACP_")
