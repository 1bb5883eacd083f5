"""Product feeds: pure renderers from (catalog, settings, live availability) to bytes.

Each format module (`json`, `google`, `shopify`) exposes `render(catalog, settings,
availability) -> bytes`. `availability` maps a sellable item id to its live count, `None`
meaning unlimited (as `shop.checkout.stock.available_quantities` returns it). This package
holds the few rules the three formats share so they never disagree about a product.

May import: config and the shared modules in shop/ (money for decimals). Never storage or
checkout: the HTTP side (shop.api.feeds) passes the live counts in.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from shop.config.catalog import Product, SellableItem
from shop.config.settings import Settings

Availability = Mapping[str, int | None]


def live_quantity(item: SellableItem, availability: Availability) -> int | None:
    """Return the item's live count (None = unlimited); an item the mapping lacks uses the file."""
    if item.id in availability:
        return availability[item.id]
    return item.inventory


def in_stock(item: SellableItem, availability: Availability) -> bool:
    """Return True when at least one unit can be sold now (unlimited items always can)."""
    quantity = live_quantity(item, availability)
    return quantity is None or quantity > 0


def items_of(product: Product, items: Mapping[str, SellableItem]) -> list[SellableItem]:
    """Return the product's sellable items in file order: its variants, or the product itself."""
    ids = [v.id for v in product.variants] or [product.id]
    return [items[i] for i in ids]


def absolute_url(settings: Settings, url: str | None) -> str | None:
    """Resolve a products.json URL against storeUrl; None when there is no usable http(s) URL."""
    if not url:
        return None
    resolved = urljoin(settings.store_url.rstrip("/") + "/", url.strip())
    parts = urlsplit(resolved)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return resolved


def brand_of(product: Product, settings: Settings) -> str | None:
    """Return the product's brand, else config.json feed.brand, else None."""
    return product.brand or settings.feed_brand
