"""The ACP product feed (2026-04-17 `schema.feed.json`): a `ProductsResponse` document.

Mapping from products.json:
- Product: `id`, `title`, `description.plain`, `url`, `media[]` (every image), `variants[]`.
- Variant: one per sellable item (a product without variants becomes its own single variant,
  with the product's id, since that is the id an agent puts in a cart). `price` in integer
  minor units with the upper-case ISO code; `availability` from live stock; `barcodes[]` from
  the GTIN; `categories[]` from `category` (taxonomy `merchant`); `condition`;
  `variant_options[]`; `media[]` (the variant's image, else the product's first); `seller`
  with the store name and the policy `links[]` from config.json.
The schema has no brand field, so brand is not part of this format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shop.config.catalog import Catalog, Product, SellableItem
from shop.config.settings import Settings
from shop.feeds import Availability, absolute_url, in_stock, items_of

# config.json `policies` key -> ACP Link.type and its display title.
_POLICY_LINKS = (
    ("termsUrl", "terms_of_service", "Terms of Service"),
    ("privacyUrl", "privacy_policy", "Privacy Policy"),
    ("returnsUrl", "refund_policy", "Returns Policy"),
)


def render(catalog: Catalog, settings: Settings, availability: Availability) -> bytes:
    """Render the catalog as an ACP feed ProductsResponse, UTF-8 JSON."""
    document = build(catalog, settings, availability)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build(catalog: Catalog, settings: Settings, availability: Availability) -> dict[str, Any]:
    """Build the ProductsResponse object (`{"products": [...]}`)."""
    seller = _seller(settings)
    return {
        "products": [
            _product(p, catalog.items, settings, availability, seller) for p in catalog.products
        ]
    }


def _product(
    product: Product,
    items: Mapping[str, SellableItem],
    settings: Settings,
    availability: Availability,
    seller: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": product.id, "title": product.title}
    if product.description:
        body["description"] = {"plain": product.description}
    url = absolute_url(settings, product.url)
    if url:
        body["url"] = url
    media = [_image(settings, image, product.title) for image in product.images]
    if media := [m for m in media if m]:
        body["media"] = media
    body["variants"] = [
        _variant(item, settings, availability, seller, url) for item in items_of(product, items)
    ]
    return body


def _variant(
    item: SellableItem,
    settings: Settings,
    availability: Availability,
    seller: dict[str, Any],
    url: str | None,
) -> dict[str, Any]:
    product, variant = item.product, item.variant
    available = in_stock(item, availability)
    body: dict[str, Any] = {"id": item.id, "title": item.title}
    if url:
        body["url"] = url
    gtin = variant.gtin if variant else product.gtin
    if gtin:
        body["barcodes"] = [{"type": "GTIN", "value": gtin}]
    body["price"] = {"amount": item.price, "currency": settings.currency.upper()}
    body["availability"] = {
        "available": available,
        "status": "in_stock" if available else "out_of_stock",
    }
    if product.category:
        body["categories"] = [{"value": product.category, "taxonomy": "merchant"}]
    body["condition"] = [product.condition]
    if item.options:
        body["variant_options"] = [{"name": k, "value": v} for k, v in item.options.items()]
    image = _image(settings, item.image, item.title)
    if image:
        body["media"] = [image]
    body["seller"] = seller
    return body


def _image(settings: Settings, url: str | None, alt: str) -> dict[str, Any] | None:
    resolved = absolute_url(settings, url)
    return {"type": "image", "url": resolved, "alt_text": alt} if resolved else None


def _seller(settings: Settings) -> dict[str, Any]:
    seller: dict[str, Any] = {"name": settings.store_name}
    links = []
    for key, kind, title in _POLICY_LINKS:
        raw = settings.policies.get(key)
        url = absolute_url(settings, raw) if isinstance(raw, str) else None
        if url:
            links.append({"type": kind, "title": title, "url": url})
    if links:
        seller["links"] = links
    return seller
