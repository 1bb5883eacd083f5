"""config.json's tax rules: tax.homeCountry and tax.nexus keys read unambiguously.

A bare key ("CA") is a region of the store's tax.homeCountry (default US); "US-CA" and "CA-ON"
are ISO 3166-2 regions; "DE-*" is a whole country. An address is matched by its own region
within its own country, so Toronto (ON, CA) is never California.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from shop.config.fields import Fields

DEFAULT_TAX_COUNTRY = "US"
_COUNTRY = re.compile(r"[A-Z]{2}")
_SUBDIVISION = re.compile(r"[A-Z0-9]{1,3}")


def parse_home_country(tax: Fields) -> str:
    """Read tax.homeCountry: the ISO 3166-1 country whose regions bare nexus keys name."""
    country = (tax.text("homeCountry", DEFAULT_TAX_COUNTRY) or "").strip().upper()
    if not _COUNTRY.fullmatch(country):
        raise tax.error(
            "homeCountry",
            f"is {country!r}; use the store's two-letter ISO 3166-1 "
            'country code, e.g. "US" or "CA".',
        )
    return country


def nexus_key(country: str, region: str) -> str:
    """Return the tax.nexus key of a region of a country: ('US', 'CA') -> 'US-CA'."""
    return f"{country}-{region}"


def parse_nexus(nexus: Fields, home: str) -> dict[str, Decimal]:
    """Read tax.nexus into canonical keys ("CA" -> "US-CA"); "CA" alone never means Canada."""
    rates: dict[str, Decimal] = {}
    for raw_key, rate in nexus.mapping().items():
        key = raw_key.strip().upper()
        country, sep, region = key.partition("-")
        if not sep:
            country, region = home, key
        if not (_COUNTRY.fullmatch(country) and (region == "*" or _SUBDIVISION.fullmatch(region))):
            raise nexus.error(
                raw_key,
                f"is not a region code; use a region of {home} such as "
                f'"CA", an ISO 3166-2 code such as "US-CA" or "CA-ON", or "DE-*" '
                "for a whole country.",
            )
        try:
            value = Decimal(str(rate))
        except InvalidOperation:
            value = Decimal(-1)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float | str)
            or not (Decimal(0) <= value < Decimal(1))
        ):
            raise nexus.error(
                raw_key, f"must be a rate between 0 and 1 (0.0725 for 7.25%), got {rate!r}."
            )
        canonical = nexus_key(country, region)
        if canonical in rates:
            raise nexus.error(raw_key, f"names {canonical} a second time; keep one entry.")
        rates[canonical] = value
    return rates
