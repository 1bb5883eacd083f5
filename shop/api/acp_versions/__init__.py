"""Every released ACP version at the edge: its request shapes in, its response shapes out.

The checkout domain and `acp_parse` / `acp_render` speak one shape, today's (2026-04-17). An
`Adapter` translates one released version to and from it, and nothing else:

- `request(body)`: a create/update/complete body in the version's shapes -> today's shapes
  (2025-09-29 `items`, `fulfillment_address`, `fulfillment_option_id`; 2025-12-12 and
  2026-01-16 `items`, `selected_fulfillment_options[{type, shipping: {option_id, item_ids}}]`);
- `session(body)`: a rendered 2026-04-17 CheckoutSession -> the version's CheckoutSession;
- `error(body)`: a flat ACP Error -> the version's Error (its JSONPath params, its fields).

Each older version lives in its own module (`v2025_09_29`, `v2025_12_12` which also serves
2026-01-16, `v2026_01_30`); tests validate every endpoint's answer in every version against
that version's own schema.agentic_checkout.json (shop/spec/acp/<version>/).
"""

from __future__ import annotations

from shop.api.acp_versions.adapter import Adapter
from shop.api.acp_versions.current import CURRENT
from shop.api.acp_versions.v2025_09_29 import V2025_09_29
from shop.api.acp_versions.v2025_12_12 import V2025_12_12, V2026_01_16
from shop.api.acp_versions.v2026_01_30 import V2026_01_30

ADAPTERS: dict[str, Adapter] = {
    adapter.version: adapter
    for adapter in (V2025_09_29, V2025_12_12, V2026_01_16, V2026_01_30, CURRENT)
}
NEWEST = CURRENT.version


def adapter_for(version: str) -> Adapter:
    """Return the adapter of a released version (today's for any other string)."""
    return ADAPTERS.get(version, CURRENT)


__all__ = ["ADAPTERS", "NEWEST", "Adapter", "adapter_for"]
