"""Tax by region: the rate for a shipping address under the store's tax.nexus.

An address is matched by its own region within its own country, so Toronto (ON, CA) is never
California; the keys were made canonical by shop.config.tax_rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shop.config.tax_rules import nexus_key


def rate_for(
    nexus: Mapping[str, Decimal], home_country: str, address: Mapping[str, Any] | None
) -> Decimal | None:
    """Return the rate for an address's region within its country, or None without nexus.

    An address without a country is in the home country; a state given as ISO 3166-2
    ("US-CA") is read as its region.
    """
    if not address:
        return None
    country = str(address.get("country") or "").strip().upper() or home_country
    region = str(address.get("state") or "").strip().upper().removeprefix(f"{country}-")
    if region and nexus_key(country, region) in nexus:
        return nexus[nexus_key(country, region)]
    return nexus.get(nexus_key(country, "*"))
