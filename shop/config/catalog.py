"""The catalog: products.json -> products, variants and sellable items by id, validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shop.config.jsonfile import load_json_file
from shop.config.schema import PRODUCT, PRODUCTS_FILE, VARIANT
from shop.config.strict import check_known
from shop.errors import ConfigError

_CONDITIONS = ("new", "refurbished", "used")


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    title: str
    price: int
    inventory: int | None
    options: dict[str, str] = field(default_factory=dict)
    sku: str | None = None
    gtin: str | None = None
    image: str | None = None
    grams: int | None = None


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    title: str
    description: str
    url: str
    images: tuple[str, ...]
    brand: str | None
    gtin: str | None
    category: str | None
    condition: str
    price: int
    inventory: int | None
    digital: bool
    tax_code: str | None
    grams: int | None
    tags: tuple[str, ...]
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class SellableItem:
    """One thing an agent can put in a cart: a variant, or a product without variants."""

    id: str
    product: Product
    variant: Variant | None
    title: str
    price: int
    inventory: int | None
    digital: bool

    @property
    def options(self) -> dict[str, str]:
        return dict(self.variant.options) if self.variant else {}

    @property
    def image(self) -> str | None:
        if self.variant and self.variant.image:
            return self.variant.image
        return self.product.images[0] if self.product.images else None


@dataclass(frozen=True, slots=True)
class Catalog:
    products: tuple[Product, ...]
    items: dict[str, SellableItem]

    def item(self, item_id: str) -> SellableItem | None:
        """Return the sellable item with this id, or None."""
        return self.items.get(item_id)


def load_catalog(path: str) -> Catalog:
    """Read and validate products.json; raise ConfigError naming the product and field."""
    data = load_json_file(path, "products.json", "SHOP_PRODUCTS")
    trail: tuple[str, ...] = ()
    if isinstance(data, dict) and isinstance(data.get("products"), list):
        check_known(data, PRODUCTS_FILE, path)
        data, trail = data["products"], ("products",)
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: the file must be a JSON list of products, like "
            '[{"id": "widget", "title": "…", "price": 2999, "inventory": 10}].'
        )
    return parse_catalog(data, path, trail)


def parse_catalog(
    data: list[Any], path: str = "products.json", trail: tuple[str, ...] = ()
) -> Catalog:
    """Validate a list of product dicts and build the Catalog."""
    products: list[Product] = []
    items: dict[str, SellableItem] = {}
    for index, raw in enumerate(data):
        product = _parse_product(raw, index, path, (*trail, index))
        products.append(product)
        if product.variants:
            for variant in product.variants:
                _add_item(items, path, product, variant)
        else:
            _add_item(items, path, product, None)
    if not products:
        raise ConfigError(f"{path}: the catalog is empty; add at least one product.")
    return Catalog(products=tuple(products), items=items)


def _add_item(
    items: dict[str, SellableItem], path: str, product: Product, variant: Variant | None
) -> None:
    item_id = variant.id if variant else product.id
    if item_id in items:
        raise ConfigError(
            f"{path}: id '{item_id}' is used twice (product '{product.id}'); "
            "every product and variant id must be unique."
        )
    items[item_id] = SellableItem(
        id=item_id,
        product=product,
        variant=variant,
        title=variant.title if variant else product.title,
        price=variant.price if variant else product.price,
        inventory=variant.inventory if variant else product.inventory,
        digital=product.digital,
    )


def _where(path: str, pid: str, name: str) -> str:
    return f"{path}: product '{pid}', field '{name}'"


def _text(
    raw: dict[str, Any],
    name: str,
    where: str,
    *,
    required: bool = False,
    default: str | None = None,
) -> str | None:
    value = raw.get(name, default)
    if value is None:
        if required:
            raise ConfigError(f"{where} is missing; add a text value for '{name}'.")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{where} must be a non-empty text value, got {value!r}.")
    return value


def _price(raw: dict[str, Any], where: str) -> int:
    if "price" not in raw:
        raise ConfigError(f"{where} is missing; prices are integer minor units (2999 = $29.99).")
    value = raw["price"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where} must be an integer in minor units (2999 for $29.99), got {value!r}."
        )
    if value < 0:
        raise ConfigError(f"{where} must not be negative, got {value}.")
    return value


def _inventory(raw: dict[str, Any], where: str) -> int | None:
    value = raw.get("inventory")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be a whole number or null for unlimited, got {value!r}.")
    if value < 0:
        raise ConfigError(f"{where} must not be negative (got {value}); use 0 for sold out.")
    return value


def _optional_int(raw: dict[str, Any], name: str, where: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where} must be a whole number, got {value!r}.")
    return value


def _parse_product(raw: Any, index: int, path: str, trail: tuple[str | int, ...]) -> Product:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: entry #{index + 1} must be an object with an 'id', got {raw!r}."
        )
    pid = raw.get("id")
    if not isinstance(pid, str) or not pid.strip():
        raise ConfigError(f"{path}: entry #{index + 1} needs an 'id' text value (e.g. \"widget\").")
    check_known(raw, PRODUCT, path, trail, f"product '{pid}'")
    w = lambda name: _where(path, pid, name)  # noqa: E731
    images = raw.get("images", [])
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ConfigError(f"{w('images')} must be a list of image URLs.")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{w('tags')} must be a list of text values.")
    condition = _text(raw, "condition", w("condition"), default="new")
    if condition not in _CONDITIONS:
        raise ConfigError(f"{w('condition')} must be one of {', '.join(_CONDITIONS)}.")
    digital = raw.get("digital", False)
    if not isinstance(digital, bool):
        raise ConfigError(f"{w('digital')} must be true or false.")
    raw_variants = raw.get("variants") or []
    if not isinstance(raw_variants, list):
        raise ConfigError(f"{w('variants')} must be a list of variants.")
    has_variants = bool(raw_variants)
    if has_variants and raw.get("inventory") is not None:
        # Stock is counted per variant; a product-level number would silently count nothing.
        raise ConfigError(
            f"{w('inventory')} is set but the product has variants, whose stock "
            "is counted one by one; move the number onto each variant's "
            "'inventory' and remove it from the product."
        )
    price = _price(raw, w("price")) if not has_variants or "price" in raw else None
    variants = tuple(
        _parse_variant(v, i, path, pid, price, (*trail, "variants", i))
        for i, v in enumerate(raw_variants)
    )
    return Product(
        id=pid,
        title=_text(raw, "title", w("title"), required=True) or pid,
        description=_text(raw, "description", w("description"), default="") or "",
        url=_text(raw, "url", w("url"), default="") or "",
        images=tuple(images),
        brand=_text(raw, "brand", w("brand")),
        gtin=_text(raw, "gtin", w("gtin")),
        category=_text(raw, "category", w("category")),
        condition=condition or "new",
        price=price if price is not None else min(v.price for v in variants),
        inventory=_inventory(raw, w("inventory")),
        digital=digital,
        tax_code=_text(raw, "taxCode", w("taxCode")),
        grams=_optional_int(raw, "grams", w("grams")),
        tags=tuple(tags),
        variants=variants,
    )


def _parse_variant(
    raw: Any,
    index: int,
    path: str,
    pid: str,
    default_price: int | None,
    trail: tuple[str | int, ...],
) -> Variant:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
        raise ConfigError(
            f"{path}: product '{pid}', variant #{index + 1} needs an 'id' text value."
        )
    vid = raw["id"]
    where = f"{path}: product '{pid}', variant '{vid}'"
    check_known(raw, VARIANT, path, trail, f"product '{pid}', variant '{vid}'")
    if "price" in raw or default_price is None:
        price = _price(raw, f"{where}, field 'price'")
    else:
        price = default_price
    options = raw.get("options", {})
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise ConfigError(
            f'{where}, field \'options\' must map option names to text, e.g. {{"Color": "Red"}}.'
        )
    return Variant(
        id=vid,
        title=_text(raw, "title", f"{where}, field 'title'", default=vid) or vid,
        price=price,
        inventory=_inventory(raw, f"{where}, field 'inventory'"),
        options=options,
        sku=_text(raw, "sku", f"{where}, field 'sku'"),
        gtin=_text(raw, "gtin", f"{where}, field 'gtin'"),
        image=_text(raw, "image", f"{where}, field 'image'"),
        grams=_optional_int(raw, "grams", f"{where}, field 'grams'"),
    )
