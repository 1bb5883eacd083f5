"""The one time seam: tests move the clock by patching `shop.clock.now`."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def epoch() -> int:
    """Return the current time as whole Unix seconds (what the database stores)."""
    return int(now().timestamp())


def iso(seconds: int) -> str:
    """Render Unix seconds as RFC 3339 UTC text."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
