"""clock: RFC 3339 text is what strftime gives, whichever way the time arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shop import clock

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


@pytest.mark.parametrize(
    "seconds",
    [0, -1, 59, 86_399, 951_782_400, 1_709_251_199, 1_776_000_000, 4_102_444_800, 253_402_300_799],
)
def test_iso_renders_unix_seconds_as_utc(seconds: int) -> None:
    assert clock.iso(seconds) == datetime.fromtimestamp(seconds, UTC).strftime(RFC3339)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 4, 17, 0, 0, 0, tzinfo=UTC),
        datetime(1999, 12, 31, 12, 30, 5, 1, tzinfo=UTC),
        datetime(2026, 4, 17, 8, 5, 9, 250_000),  # naive: rendered as its wall time, like strftime
    ],
)
def test_iso_datetime_drops_the_fraction_and_says_z(moment: datetime) -> None:
    for shifted in (moment, moment + timedelta(days=5)):
        assert clock.iso_datetime(shifted) == shifted.strftime(RFC3339)
