"""The Google Merchant Center feed: RSS 2.0 with the `g:` namespace, one <item> per variant.

Built with xml.etree so every text value is escaped by the serializer (a product title cannot
inject markup); characters XML 1.0 forbids (most C0 controls) are dropped, since no escape can
carry them. Prices are `"29.99 USD"` / `"1500 JPY"` through `shop.money` (Decimal, the
currency's exponent). Variants share `g:item_group_id` = the product id; options named like
Google's variant attributes (Color, Size, Material, Pattern) also fill `g:color` etc.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from shop.config.catalog import Catalog, SellableItem
from shop.config.settings import Settings
from shop.feeds import Availability, absolute_url, brand_of, in_stock, items_of
from shop.money import format_amount

NS = "http://base.google.com/ns/1.0"
_VARIANT_ATTRIBUTES = {
    "color": "color",
    "colour": "color",
    "size": "size",
    "material": "material",
    "pattern": "pattern",
}
# Characters outside XML 1.0's Char production (tab, LF and CR are allowed).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def render(catalog: Catalog, settings: Settings, availability: Availability) -> bytes:
    """Render the catalog as a Google Merchant RSS 2.0 feed, UTF-8 XML."""
    ET.register_namespace("g", NS)
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    _text(channel, "title", settings.store_name)
    _text(channel, "link", settings.store_url)
    _text(channel, "description", f"Products from {settings.store_name}")
    for product in catalog.products:
        for item in items_of(product, catalog.items):
            _item(channel, item, settings, availability)
    ET.indent(rss)
    document = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(rss, encoding="unicode")
    return (document + "\n").encode("utf-8")


def _item(
    channel: ET.Element, item: SellableItem, settings: Settings, availability: Availability
) -> None:
    product, variant = item.product, item.variant
    node = ET.SubElement(channel, "item")
    g = lambda name, value: _text(node, f"{{{NS}}}{name}", value)  # noqa: E731
    g("id", item.id)
    g("title", item.title)
    g("description", product.description or product.title)
    g("link", absolute_url(settings, product.url) or settings.store_url)
    g("image_link", absolute_url(settings, item.image))
    for extra in product.images[1:]:
        g("additional_image_link", absolute_url(settings, extra))
    g("price", format_amount(item.price, settings.currency))
    g("availability", "in_stock" if in_stock(item, availability) else "out_of_stock")
    g("brand", brand_of(product, settings))
    g("gtin", variant.gtin if variant else product.gtin)
    g("condition", product.condition)
    g("product_type", product.category)
    if variant:
        g("item_group_id", product.id)
        for name, value in variant.options.items():
            attribute = _VARIANT_ATTRIBUTES.get(name.strip().lower())
            if attribute:
                g(attribute, value)


def _text(parent: ET.Element, tag: str, value: str | None) -> None:
    """Append <tag>value</tag> when there is a value."""
    if value:
        ET.SubElement(parent, tag).text = _NOT_XML.sub("", value)
