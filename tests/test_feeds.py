"""The feed renderers, parsed back with real parsers: jsonschema, xml.etree and csv."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from shop.config.catalog import Catalog, parse_catalog
from shop.config.settings import Settings, load_settings
from shop.feeds import google, shopify
from shop.feeds import json as acp_json

SPEC = Path(__file__).resolve().parents[1] / "shop" / "spec" / "acp" / "2026-04-17"
G = "{http://base.google.com/ns/1.0}"
NASTY_TITLE = 'Tom & Jerry\'s <b>"Best"</b> Mug'
NASTY_DESCRIPTION = 'Holds 12 oz, dishwasher-safe.\nSays "hello", <loudly> & proudly.'

BASE_CONFIG: dict[str, Any] = {
    "storeName": "Feed Store",
    "storeUrl": "https://feed.test",
    "currency": "usd",
    "policies": {
        "termsUrl": "https://feed.test/terms",
        "privacyUrl": "/privacy",
        "returnsUrl": "https://feed.test/returns",
    },
    "feed": {"brand": "House Brand"},
}

PRODUCTS: list[dict[str, Any]] = [
    {
        "id": "widget",
        "title": "Premium Widget",
        "description": "A widget.",
        "url": "https://feed.test/widget",
        "images": ["https://feed.test/widget.jpg", "/w2.jpg"],
        "brand": "Acme",
        "gtin": "1234567890123",
        "category": "Hardware",
        "condition": "new",
        "price": 2999,
        "inventory": 100,
        "grams": 250,
        "tags": ["tools", "metal"],
    },
    {
        "id": "mug",
        "title": NASTY_TITLE,
        "description": NASTY_DESCRIPTION,
        "url": "/mug",
        "images": [],
        "price": 1200,
        "inventory": 3,
        "condition": "refurbished",
    },
    {
        "id": "shirt",
        "title": "T-Shirt",
        "description": "Cotton.",
        "url": "https://feed.test/shirt",
        "images": ["https://feed.test/shirt.jpg"],
        "category": "Apparel",
        "variants": [
            {
                "id": "shirt-red-s",
                "title": "T-Shirt (Red, S)",
                "price": 2000,
                "inventory": 10,
                "options": {"Color": "Red", "Size": "S"},
                "sku": "SH-R-S",
                "gtin": "00012345600012",
                "image": "https://feed.test/shirt-red.jpg",
            },
            {
                "id": "shirt-blue-m",
                "title": "T-Shirt (Blue, M)",
                "price": 2200,
                "inventory": 0,
                "options": {"Color": "Blue", "Size": "M"},
                "sku": "SH-B-M",
            },
        ],
    },
    {
        "id": "ebook",
        "title": "E-Book",
        "description": "PDF.",
        "url": "https://feed.test/ebook",
        "price": 1500,
        "inventory": None,
        "digital": True,
    },
]


def make_settings(tmp_path: Path, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Write the base config.json into tmp_path and load it with config overrides."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(BASE_CONFIG), encoding="utf-8")
    return load_settings(
        env={"SHOP_CONFIG": str(config), **(env or {})}, config_overrides=overrides
    )


def make_catalog(products: list[dict[str, Any]] | None = None) -> Catalog:
    """Build the test catalog (or the given products) without a file."""
    return parse_catalog(products if products is not None else PRODUCTS)


def file_stock(catalog: Catalog, **changes: int | None) -> dict[str, int | None]:
    """Live availability as products.json seeds it, with some counts changed."""
    stock = {item_id: item.inventory for item_id, item in catalog.items.items()}
    stock.update(changes)
    return stock


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def catalog() -> Catalog:
    return make_catalog()


# --- ACP JSON --------------------------------------------------------------------------------


def _feed_validator(definition: str) -> Draft202012Validator:
    bundle = Resource.from_contents(json.loads((SPEC / "schema.feed.json").read_text()))
    registry = Registry().with_resources([(bundle.id(), bundle)])
    checker = FormatChecker()

    # jsonschema checks "uri" only with an optional package; check absolute http(s) URLs here.
    @checker.checks("uri")
    def _absolute_uri(value: object) -> bool:
        parts = urlsplit(str(value))
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    return Draft202012Validator(
        {"$ref": f"{bundle.id()}#/$defs/{definition}"}, registry=registry, format_checker=checker
    )


FEED_DOCUMENT = _feed_validator("ProductsResponse")
FEED_PRODUCT = _feed_validator("Product")


def acp_feed(
    catalog: Catalog, settings: Settings, availability: dict[str, int | None]
) -> dict[str, Any]:
    body = acp_json.render(catalog, settings, availability)
    document = json.loads(body.decode("utf-8"))
    FEED_DOCUMENT.validate(document)
    for product in document["products"]:
        FEED_PRODUCT.validate(product)
    return document


def variants_by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["id"]: v for p in document["products"] for v in p["variants"]}


def test_validator_accepts_the_spec_example_and_rejects_a_decimal_price() -> None:
    examples = json.loads((SPEC / "examples.feed.json").read_text())
    FEED_DOCUMENT.validate(examples["get_products_response"])
    FEED_DOCUMENT.validate(examples["upsert_products_request_single_product"])
    bad = {
        "products": [
            {
                "id": "p",
                "variants": [
                    {"id": "v", "title": "V", "price": {"amount": 29.99, "currency": "USD"}}
                ],
            }
        ]
    }
    assert not FEED_DOCUMENT.is_valid(bad)
    assert not FEED_DOCUMENT.is_valid(
        {"products": [{"id": "p", "variants": [], "url": "/relative"}]}
    )


def test_acp_feed_validates_and_maps_products(catalog: Catalog, settings: Settings) -> None:
    document = acp_feed(catalog, settings, file_stock(catalog))
    products = {p["id"]: p for p in document["products"]}
    assert list(products) == ["widget", "mug", "shirt", "ebook"]

    widget = products["widget"]
    assert widget["title"] == "Premium Widget"
    assert widget["description"] == {"plain": "A widget."}
    assert [m["url"] for m in widget["media"]] == [
        "https://feed.test/widget.jpg",
        "https://feed.test/w2.jpg",
    ]
    # A product without variants is sold by its own id: one variant with that id.
    [variant] = widget["variants"]
    assert variant["id"] == "widget"
    assert variant["price"] == {"amount": 2999, "currency": "USD"}
    assert variant["availability"] == {"available": True, "status": "in_stock"}
    assert variant["barcodes"] == [{"type": "GTIN", "value": "1234567890123"}]
    assert variant["categories"] == [{"value": "Hardware", "taxonomy": "merchant"}]
    assert variant["condition"] == ["new"]
    assert variant["seller"] == {
        "name": "Feed Store",
        "links": [
            {
                "type": "terms_of_service",
                "title": "Terms of Service",
                "url": "https://feed.test/terms",
            },
            {
                "type": "privacy_policy",
                "title": "Privacy Policy",
                "url": "https://feed.test/privacy",
            },
            {
                "type": "refund_policy",
                "title": "Returns Policy",
                "url": "https://feed.test/returns",
            },
        ],
    }
    # Relative URLs in products.json are resolved against storeUrl.
    assert products["mug"]["url"] == "https://feed.test/mug"
    assert products["mug"]["title"] == NASTY_TITLE
    assert products["mug"]["description"]["plain"] == NASTY_DESCRIPTION


def test_acp_feed_variants(catalog: Catalog, settings: Settings) -> None:
    document = acp_feed(catalog, settings, file_stock(catalog))
    shirt = next(p for p in document["products"] if p["id"] == "shirt")
    assert [v["id"] for v in shirt["variants"]] == ["shirt-red-s", "shirt-blue-m"]
    red, blue = shirt["variants"]
    assert red["variant_options"] == [
        {"name": "Color", "value": "Red"},
        {"name": "Size", "value": "S"},
    ]
    assert red["price"] == {"amount": 2000, "currency": "USD"}
    assert red["media"][0]["url"] == "https://feed.test/shirt-red.jpg"
    assert red["barcodes"] == [{"type": "GTIN", "value": "00012345600012"}]
    assert blue["media"][0]["url"] == "https://feed.test/shirt.jpg"  # the product's image
    assert "barcodes" not in blue


def test_acp_feed_availability_is_live(catalog: Catalog, settings: Settings) -> None:
    stock = file_stock(catalog, widget=0, **{"shirt-blue-m": 7})
    variants = variants_by_id(acp_feed(catalog, settings, stock))
    assert variants["widget"]["availability"] == {"available": False, "status": "out_of_stock"}
    assert variants["shirt-blue-m"]["availability"] == {"available": True, "status": "in_stock"}
    assert variants["ebook"]["availability"] == {"available": True, "status": "in_stock"}


def test_acp_feed_jpy_amounts_stay_minor_units(catalog: Catalog, tmp_path: Path) -> None:
    variants = variants_by_id(
        acp_feed(catalog, make_settings(tmp_path, currency="jpy"), file_stock(catalog))
    )
    assert variants["ebook"]["price"] == {"amount": 1500, "currency": "JPY"}


def test_acp_feed_omits_what_the_merchant_left_out(tmp_path: Path) -> None:
    catalog = make_catalog([{"id": "bare", "title": "Bare", "price": 100, "inventory": 1}])
    settings = make_settings(tmp_path, policies={})
    [product] = acp_feed(catalog, settings, file_stock(catalog))["products"]
    assert set(product) == {"id", "title", "variants"}
    assert product["variants"][0]["seller"] == {"name": "Feed Store"}


# --- Google Merchant XML ---------------------------------------------------------------------


def google_items(
    catalog: Catalog, settings: Settings, availability: dict[str, int | None]
) -> dict[str, ET.Element]:
    body = google.render(catalog, settings, availability)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None and channel.findtext("title") == settings.store_name
    return {item.findtext(f"{G}id"): item for item in channel.findall("item")}


def test_google_feed_fields(catalog: Catalog, settings: Settings) -> None:
    items = google_items(catalog, settings, file_stock(catalog))
    assert list(items) == ["widget", "mug", "shirt-red-s", "shirt-blue-m", "ebook"]
    widget = items["widget"]
    assert {child.tag.removeprefix(G): child.text for child in widget} == {
        "id": "widget",
        "title": "Premium Widget",
        "description": "A widget.",
        "link": "https://feed.test/widget",
        "image_link": "https://feed.test/widget.jpg",
        "additional_image_link": "https://feed.test/w2.jpg",
        "price": "29.99 USD",
        "availability": "in_stock",
        "brand": "Acme",
        "gtin": "1234567890123",
        "condition": "new",
        "product_type": "Hardware",
    }
    # No brand on the product: config.json feed.brand.
    assert items["mug"].findtext(f"{G}brand") == "House Brand"
    assert items["mug"].findtext(f"{G}condition") == "refurbished"
    assert items["mug"].findtext(f"{G}price") == "12.00 USD"
    assert items["widget"].find(f"{G}item_group_id") is None


def test_google_feed_variants_share_an_item_group(catalog: Catalog, settings: Settings) -> None:
    items = google_items(catalog, settings, file_stock(catalog))
    red, blue = items["shirt-red-s"], items["shirt-blue-m"]
    assert red.findtext(f"{G}item_group_id") == blue.findtext(f"{G}item_group_id") == "shirt"
    assert (red.findtext(f"{G}color"), red.findtext(f"{G}size")) == ("Red", "S")
    assert red.findtext(f"{G}image_link") == "https://feed.test/shirt-red.jpg"
    assert red.findtext(f"{G}gtin") == "00012345600012"
    assert blue.findtext(f"{G}price") == "22.00 USD"
    assert blue.findtext(f"{G}availability") == "out_of_stock"


def test_google_feed_availability_is_live(catalog: Catalog, settings: Settings) -> None:
    items = google_items(catalog, settings, file_stock(catalog, widget=0, mug=1))
    assert items["widget"].findtext(f"{G}availability") == "out_of_stock"
    assert items["mug"].findtext(f"{G}availability") == "in_stock"
    assert items["ebook"].findtext(f"{G}availability") == "in_stock"  # unlimited


def test_google_feed_jpy_has_no_decimals(catalog: Catalog, tmp_path: Path) -> None:
    items = google_items(catalog, make_settings(tmp_path, currency="jpy"), file_stock(catalog))
    assert items["widget"].findtext(f"{G}price") == "2999 JPY"
    assert items["ebook"].findtext(f"{G}price") == "1500 JPY"


def test_google_feed_escapes_text(catalog: Catalog, settings: Settings) -> None:
    body = google.render(catalog, settings, file_stock(catalog))
    assert b"<b>" not in body and b"<loudly>" not in body
    assert b"Tom &amp; Jerry's &lt;b&gt;" in body
    mug = google_items(catalog, settings, file_stock(catalog))["mug"]
    assert mug.findtext(f"{G}title") == NASTY_TITLE
    assert mug.findtext(f"{G}description") == NASTY_DESCRIPTION


def test_google_feed_cannot_be_broken_by_markup_or_control_characters(
    settings: Settings,
) -> None:
    title = "</g:title></item><item><g:id>evil</g:id>\x00\x1b<![CDATA[x]]>"
    catalog = make_catalog([{"id": "p1", "title": title, "price": 100, "inventory": 1}])
    items = google_items(catalog, settings, file_stock(catalog))
    assert list(items) == ["p1"]
    assert (
        items["p1"].findtext(f"{G}title") == "</g:title></item><item><g:id>evil</g:id><![CDATA[x]]>"
    )


# --- Shopify CSV -----------------------------------------------------------------------------


def shopify_rows(
    catalog: Catalog, settings: Settings, availability: dict[str, int | None]
) -> list[dict[str, str]]:
    text = shopify.render(catalog, settings, availability).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == [
        "Handle",
        "Title",
        "Body (HTML)",
        "Vendor",
        "Product Category",
        "Type",
        "Tags",
        "Published",
        "Option1 Name",
        "Option1 Value",
        "Variant SKU",
        "Variant Grams",
        "Variant Inventory Tracker",
        "Variant Inventory Qty",
        "Variant Inventory Policy",
        "Variant Price",
        "Image Src",
        "Variant Image",
        "Variant Barcode",
    ]
    rows = list(reader)
    assert all(None not in row and len(row) == 19 for row in rows)
    return rows


def test_shopify_csv_product_without_variants(catalog: Catalog, settings: Settings) -> None:
    widget = shopify_rows(catalog, settings, file_stock(catalog))[0]
    assert widget == {
        "Handle": "widget",
        "Title": "Premium Widget",
        "Body (HTML)": "A widget.",
        "Vendor": "Acme",
        "Product Category": "",
        "Type": "Hardware",
        "Tags": "tools, metal",
        "Published": "TRUE",
        "Option1 Name": "Title",
        "Option1 Value": "Default Title",
        "Variant SKU": "widget",
        "Variant Grams": "250",
        "Variant Inventory Tracker": "shopify",
        "Variant Inventory Qty": "100",
        "Variant Inventory Policy": "deny",
        "Variant Price": "29.99",
        "Image Src": "https://feed.test/widget.jpg",
        "Variant Image": "",
        "Variant Barcode": "1234567890123",
    }


def test_shopify_csv_variants_are_option_rows(catalog: Catalog, settings: Settings) -> None:
    rows = [
        r for r in shopify_rows(catalog, settings, file_stock(catalog)) if r["Handle"] == "shirt"
    ]
    first, second = rows
    assert first["Title"] == "T-Shirt" and first["Vendor"] == "House Brand"
    assert first["Published"] == "TRUE" and first["Image Src"] == "https://feed.test/shirt.jpg"
    # Shopify's format: later rows of a product carry only the handle and variant columns.
    assert second["Title"] == second["Body (HTML)"] == second["Published"] == ""
    assert [(r["Option1 Name"], r["Option1 Value"]) for r in rows] == [
        ("Color / Size", "Red / S"),
        ("Color / Size", "Blue / M"),
    ]
    assert [r["Variant SKU"] for r in rows] == ["SH-R-S", "SH-B-M"]
    assert [r["Variant Price"] for r in rows] == ["20.00", "22.00"]
    assert [r["Variant Inventory Qty"] for r in rows] == ["10", "0"]
    assert first["Variant Image"] == "https://feed.test/shirt-red.jpg"
    assert first["Variant Barcode"] == "00012345600012"


@pytest.mark.parametrize(
    ("category", "product_category", "type_"),
    [
        ("Media > Books", "Media > Books", "Books"),
        (
            "Apparel & Accessories > Clothing > Shirts & Tops",
            "Apparel & Accessories > Clothing > Shirts & Tops",
            "Shirts & Tops",
        ),
        ("Hardware", "", "Hardware"),  # free text: no taxonomy path, so Type only
        ("Tools >", "", "Tools >"),  # not a path: an empty step
        (None, "", ""),
    ],
)
def test_shopify_csv_passes_a_taxonomy_category_through(
    settings: Settings, category: str | None, product_category: str, type_: str
) -> None:
    product = {**PRODUCTS[0], "category": category}
    [row] = shopify_rows(make_catalog([product]), settings, file_stock(make_catalog([product])))
    assert row["Product Category"] == product_category
    assert row["Type"] == type_


def test_shopify_csv_quotes_and_escapes_text(catalog: Catalog, settings: Settings) -> None:
    raw = shopify.render(catalog, settings, file_stock(catalog)).decode("utf-8")
    assert '"Tom & Jerry\'s <b>""Best""</b> Mug"' in raw  # quotes doubled inside a quoted cell
    mug = next(
        r for r in shopify_rows(catalog, settings, file_stock(catalog)) if r["Handle"] == "mug"
    )
    assert mug["Title"] == NASTY_TITLE
    assert mug["Body (HTML)"] == (
        "Holds 12 oz, dishwasher-safe.<br>\nSays &quot;hello&quot;, &lt;loudly&gt; &amp; proudly."
    )


def test_shopify_csv_live_and_unlimited_stock(catalog: Catalog, settings: Settings) -> None:
    rows = {
        r["Variant SKU"]: r for r in shopify_rows(catalog, settings, file_stock(catalog, widget=0))
    }
    assert rows["widget"]["Variant Inventory Qty"] == "0"
    ebook = rows["ebook"]
    assert (
        ebook["Variant Inventory Tracker"],
        ebook["Variant Inventory Qty"],
        ebook["Variant Inventory Policy"],
    ) == ("", "", "continue")


def test_shopify_csv_jpy_price_has_no_decimals(catalog: Catalog, tmp_path: Path) -> None:
    rows = shopify_rows(catalog, make_settings(tmp_path, currency="jpy"), file_stock(catalog))
    assert rows[0]["Variant Price"] == "2999"


# --- all formats -----------------------------------------------------------------------------


def _is_available(
    fmt: str,
    catalog: Catalog,
    settings: Settings,
    availability: dict[str, int | None],
    item_id: str,
) -> bool:
    if fmt == "json":
        variant = variants_by_id(acp_feed(catalog, settings, availability))[item_id]
        return variant["availability"]["available"]
    if fmt == "google":
        item = google_items(catalog, settings, availability)[item_id]
        return item.findtext(f"{G}availability") == "in_stock"
    row = next(
        r for r in shopify_rows(catalog, settings, availability) if r["Variant SKU"] == item_id
    )
    quantity = row["Variant Inventory Qty"]
    return quantity == "" or int(quantity) > 0


@pytest.mark.parametrize("fmt", ["json", "google", "shopify"])
@pytest.mark.parametrize(("quantity", "available"), [(0, False), (1, True), (None, True)])
def test_every_format_follows_the_availability_mapping(
    fmt: str,
    quantity: int | None,
    available: bool,
    catalog: Catalog,
    settings: Settings,
) -> None:
    stock = file_stock(catalog, mug=quantity)
    assert _is_available(fmt, catalog, settings, stock, "mug") is available


@pytest.mark.parametrize("render", [acp_json.render, google.render, shopify.render])
def test_renderers_are_deterministic(render: Any, catalog: Catalog, settings: Settings) -> None:
    stock = file_stock(catalog)
    assert render(catalog, settings, stock) == render(catalog, settings, stock)
