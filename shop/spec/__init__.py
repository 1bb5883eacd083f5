"""The Agentic Commerce Protocol's own files (schemas, OpenAPI, OpenRPC, examples), as data.

Copied unchanged from the public ACP repository (see acp/SOURCE.txt, LICENSE and NOTICE), one
folder per released version. The store and its tests read them only from here. Imports nothing.
"""

from __future__ import annotations

from pathlib import Path

ACP = Path(__file__).resolve().parent / "acp"
VERSIONS = ("2025-09-29", "2025-12-12", "2026-01-16", "2026-01-30", "2026-04-17")


def acp_file(version: str, name: str) -> Path:
    """Return the path of one spec file of one ACP version (e.g. schema.agentic_checkout.json)."""
    return ACP / version / name
