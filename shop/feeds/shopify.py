"""The Shopify product CSV: one row per variant, product columns on each product's first row.

Follows Shopify's import format: later rows of a product carry only the Handle and the variant
columns. A product without variants gets Shopify's `Title` / `Default Title` option. Shopify has
a single option column here, so a variant with several options (Color and Size) is written as
`Color / Size` = `Red / Small`, which keeps every variant distinct. `Product Category` takes
products.json `category` when it is a taxonomy path ("Media > Books": Shopify's Standard
Product Taxonomy grew from Google's, whose paths the sample uses), and `Type` its last step
("Books"); a free-text category ("Hardware") is no taxonomy path, so it goes to `Type` only and
`Product Category` stays empty rather than fail Shopify's import. The csv module does the
quoting (commas, quotes, newlines); Body (HTML) is the description HTML-escaped, line breaks as
<br>.
"""

from __future__ import annotations

import csv
import html
import io

from shop.config.catalog import Catalog, Product, SellableItem
from shop.config.settings import Settings
from shop.feeds import Availability, absolute_url, brand_of, items_of, live_quantity
from shop.money import to_decimal

COLUMNS = (
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags",
    "Published", "Option1 Name", "Option1 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy",
    "Variant Price", "Image Src", "Variant Image", "Variant Barcode",
)  # fmt: skip


def render(catalog: Catalog, settings: Settings, availability: Availability) -> bytes:
    """Render the catalog as a Shopify product import CSV, UTF-8."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for product in catalog.products:
        option_names = _option_names(product)
        for index, item in enumerate(items_of(product, catalog.items)):
            row = _variant_row(item, option_names, settings, availability)
            if index == 0:
                row.update(_product_columns(product, settings))
            writer.writerow(row)
    return out.getvalue().encode("utf-8")


def _product_columns(product: Product, settings: Settings) -> dict[str, str]:
    images = [u for u in (absolute_url(settings, i) for i in product.images) if u]
    category = (product.category or "").strip()
    return {
        "Title": product.title,
        "Body (HTML)": _body_html(product.description),
        "Vendor": brand_of(product, settings) or settings.store_name,
        "Product Category": category if _is_taxonomy_path(category) else "",
        "Type": category.split(">")[-1].strip() if _is_taxonomy_path(category) else category,
        "Tags": ", ".join(product.tags),
        "Published": "TRUE",
        "Image Src": images[0] if images else "",
    }


def _variant_row(
    item: SellableItem, option_names: list[str], settings: Settings, availability: Availability
) -> dict[str, str]:
    product, variant = item.product, item.variant
    quantity = live_quantity(item, availability)
    grams = variant.grams if variant and variant.grams is not None else product.grams
    if option_names:
        name = " / ".join(option_names)
        value = " / ".join(item.options.get(n, "") for n in option_names)
    else:
        name, value = "Title", item.title if variant else "Default Title"
    return {
        "Handle": product.id,
        "Option1 Name": name,
        "Option1 Value": value,
        "Variant SKU": (variant.sku if variant else None) or item.id,
        "Variant Grams": str(grams or 0),
        # Unlimited items (licenses, digital goods) are not tracked, so they never sell out.
        "Variant Inventory Tracker": "" if quantity is None else "shopify",
        "Variant Inventory Qty": "" if quantity is None else str(quantity),
        "Variant Inventory Policy": "continue" if quantity is None else "deny",
        "Variant Price": str(to_decimal(item.price, settings.currency)),
        "Variant Image": (absolute_url(settings, variant.image) if variant else None) or "",
        "Variant Barcode": (variant.gtin if variant else product.gtin) or "",
    }


def _option_names(product: Product) -> list[str]:
    """Return the option names the product's variants use, in order of first appearance."""
    names: list[str] = []
    for variant in product.variants:
        names.extend(n for n in variant.options if n not in names)
    return names


def _is_taxonomy_path(category: str) -> bool:
    """True for "Apparel & Accessories > Clothing > Shirts": two or more non-empty steps."""
    steps = [step.strip() for step in category.split(">")]
    return len(steps) > 1 and all(steps)


def _body_html(description: str) -> str:
    return "<br>\n".join(html.escape(line) for line in description.splitlines())
