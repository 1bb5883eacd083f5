"""Pricing: a cart -> a Quote (line totals, coupons, fulfillment options, tax), in minor units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shop.config.catalog import Catalog, SellableItem
from shop.config.settings import Coupon, Settings
from shop.money import allocate, format_amount, percent_of
from shop.pricing.tax import rate_for

DIGITAL_OPTION_ID = "digital"


@dataclass(frozen=True, slots=True)
class CartLine:
    item_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Cart:
    lines: tuple[CartLine, ...]
    address: Mapping[str, Any] | None = None
    option_id: str | None = None
    coupon_codes: tuple[str, ...] = ()


def cart_of(details: Mapping[str, Any]) -> Cart:
    """Read the cart a session stores (its decoded `cart` column) into a Cart."""
    address = (details.get("fulfillment_details") or {}).get("address")
    return Cart(
        lines=tuple(CartLine(li["item_id"], li["quantity"]) for li in details["lines"]),
        address=address,
        option_id=details.get("option_id"),
        coupon_codes=tuple(details.get("coupons") or ()),
    )


@dataclass(frozen=True, slots=True)
class QuoteLine:
    id: str
    item: SellableItem
    quantity: int
    unit_amount: int
    base_amount: int
    discount: int
    subtotal: int
    tax: int
    total: int


@dataclass(frozen=True, slots=True)
class FulfillmentChoice:
    id: str
    type: str  # shipping | digital
    title: str
    description: str
    amount: int
    carrier: str | None = None
    earliest: datetime | None = None
    latest: datetime | None = None


@dataclass(frozen=True, slots=True)
class CouponOutcome:
    code: str
    reason: str | None  # None when applied; else coupon_invalid | coupon_expired | minimum_not_met
    amount: int = 0
    coupon: Coupon | None = None

    @property
    def applied(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class Quote:
    currency: str
    lines: tuple[QuoteLine, ...]
    options: tuple[FulfillmentChoice, ...]
    selected: FulfillmentChoice | None
    coupons: tuple[CouponOutcome, ...]
    items_base: int
    discount: int
    subtotal: int
    fulfillment: int
    tax: int
    total: int
    shippable: bool
    tax_applied: bool
    unknown_option_id: str | None = None  # asked for, but no option of this store has it

    def display(self, amount: int) -> str:
        """Render an amount of this quote's currency as text."""
        return format_amount(amount, self.currency)


def line_id(index: int) -> str:
    """Return the stable id of the n-th line of a cart."""
    return f"li_{index + 1}"


def tax_rate(settings: Settings, address: Mapping[str, Any] | None) -> Decimal | None:
    """Return the tax rate for a shipping address, or None when the region has no nexus."""
    return rate_for(settings.tax_nexus, settings.tax_country, address)


def fulfillment_choices(
    settings: Settings, shippable: bool, now: datetime
) -> tuple[FulfillmentChoice, ...]:
    """Return the options a cart may choose: configured shipping, or free digital delivery."""
    if not shippable:
        return (
            FulfillmentChoice(
                DIGITAL_OPTION_ID,
                "digital",
                "Digital delivery",
                "Delivered by email right after payment",
                0,
            ),
        )
    return tuple(
        FulfillmentChoice(
            id=o.id,
            type="shipping",
            title=o.title,
            description=o.description,
            amount=o.amount,
            carrier=o.carrier,
            earliest=None if o.min_days is None else now + timedelta(days=o.min_days),
            latest=None if o.max_days is None else now + timedelta(days=o.max_days),
        )
        for o in settings.shipping
    )


def _coupons(
    settings: Settings, codes: tuple[str, ...], base: int, now: datetime
) -> list[CouponOutcome]:
    outcomes: list[CouponOutcome] = []
    remaining = base
    seen: set[str] = set()
    for code in codes:
        key = code.strip().upper()
        if not key or key in seen:
            continue
        seen.add(key)
        coupon = settings.coupons.get(key)
        if coupon is None:
            outcomes.append(CouponOutcome(code, "coupon_invalid"))
        elif coupon.expires is not None and coupon.expires <= now:
            outcomes.append(CouponOutcome(code, "coupon_expired", coupon=coupon))
        elif base < coupon.min_subtotal:
            outcomes.append(CouponOutcome(code, "minimum_not_met", coupon=coupon))
        else:
            if coupon.percent_off is not None:
                amount = percent_of(remaining, coupon.percent_off / 100)
            else:
                amount = coupon.amount_off or 0
            amount = min(amount, remaining)
            remaining -= amount
            outcomes.append(CouponOutcome(code, None, amount, coupon))
    return outcomes


def price_cart(settings: Settings, catalog: Catalog, cart: Cart, now: datetime) -> Quote:
    """Price a cart whose item ids are known to the catalog."""
    items = [catalog.items[line.item_id] for line in cart.lines]
    bases = [item.price * line.quantity for item, line in zip(items, cart.lines, strict=True)]
    items_base = sum(bases)
    coupons = _coupons(settings, cart.coupon_codes, items_base, now)
    discount = sum(c.amount for c in coupons)
    line_discounts = allocate(discount, bases)
    rate = tax_rate(settings, cart.address)
    shippable = any(not item.digital for item in items)
    options = fulfillment_choices(settings, shippable, now)
    selected, unknown = _select(settings, options, cart.option_id)
    lines = []
    for index, (item, line, base, disc) in enumerate(
        zip(items, cart.lines, bases, line_discounts, strict=True)
    ):
        subtotal = base - disc
        tax = percent_of(subtotal, rate) if rate is not None else 0
        lines.append(
            QuoteLine(
                line_id(index),
                item,
                line.quantity,
                item.price,
                base,
                disc,
                subtotal,
                tax,
                subtotal + tax,
            )
        )
    fulfillment = selected.amount if selected else 0
    shipping_tax = (
        percent_of(fulfillment, rate) if rate is not None and settings.shipping_taxable else 0
    )
    tax = sum(line.tax for line in lines) + shipping_tax
    subtotal = items_base - discount
    return Quote(
        currency=settings.currency,
        lines=tuple(lines),
        options=options,
        selected=selected,
        coupons=tuple(coupons),
        items_base=items_base,
        discount=discount,
        subtotal=subtotal,
        fulfillment=fulfillment,
        tax=tax,
        total=subtotal + fulfillment + tax,
        shippable=shippable,
        tax_applied=rate is not None,
        unknown_option_id=unknown,
    )


def _select(
    settings: Settings, options: tuple[FulfillmentChoice, ...], option_id: str | None
) -> tuple[FulfillmentChoice | None, str | None]:
    """Return (the selected option, an option id this store never offers).

    An id this store does not offer selects nothing, so no price the buyer did not choose is
    shown as chosen; the checkout says which field is wrong. An id the store offers for other
    carts (`digital` after a physical item was added) is a stale choice: the first option.
    """
    chosen = next((o for o in options if o.id == option_id), None)
    if chosen is not None:
        return chosen, None
    if option_id is not None and option_id not in store_option_ids(settings):
        return None, option_id
    return (options[0] if options else None), None


def store_option_ids(settings: Settings) -> tuple[str, ...]:
    """Return every fulfillment option id this store can offer: its shipping ids and digital."""
    return (*(o.id for o in settings.shipping), DIGITAL_OPTION_ID)
