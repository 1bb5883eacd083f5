"""ACP 2026-04-17, the shapes acp_parse and acp_render speak: nothing to translate."""

from __future__ import annotations

from shop.api.acp_versions.adapter import Adapter

CURRENT = Adapter("2026-04-17")
