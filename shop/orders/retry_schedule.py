"""When order deliveries are tried: the one place the retry schedule is stated.

A failed message is tried again after `backoff(n)` seconds (30 s, doubling, at most 4 h
apart), `MAX_ATTEMPTS` tries in all, the last about a day after the first
(`GIVE_UP_AFTER_SECONDS`); then shop gives up on it. `schedule_text()` says this in words and
docs/receiving-orders.md quotes it verbatim (a test compares them). Each worker looks for due
tries every `sweep_seconds()`. A sender holds a message for `lease_seconds(timeout)`; after
that another worker may take it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from shop.config.fields import env_seconds

BACKOFF_BASE = 30
BACKOFF_CAP = 4 * 3600
MAX_ATTEMPTS = 15
LEASE_SECONDS = 60  # the longest lease: a send that takes longer is presumed dead
LEASE_MARGIN_SECONDS = 5  # a lease lasts the sink's timeout and this much more
UNKNOWN_TIMEOUT_SECONDS = 30.0  # a sink that does not say how long it may take
SWEEP_SECONDS = 15.0  # ORDER_SWEEP_SECONDS changes it


def send_seconds(timeout: float | None) -> int:
    """Return the seconds one send with `timeout` may take (None: a sink that does not say)."""
    limit = UNKNOWN_TIMEOUT_SECONDS if timeout is None else timeout
    return min(LEASE_SECONDS - LEASE_MARGIN_SECONDS, math.ceil(limit))


def lease_seconds(timeout: float | None) -> int:
    """Return how long a sender holds a message it sends with `timeout`.

    Long enough for one send, short enough that a message whose sender died (kill -9) goes
    out again soon: with the default 10 s timeout, 15 s.
    """
    return send_seconds(timeout) + LEASE_MARGIN_SECONDS


def backoff(attempts: int) -> int:
    """Return seconds to wait before the next try after `attempts` failures."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


RETRY_DELAYS = tuple(backoff(n) for n in range(1, MAX_ATTEMPTS))
GIVE_UP_AFTER_SECONDS = sum(RETRY_DELAYS)  # from the first try to the last


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def schedule_text() -> str:
    """Return the retry schedule in words (docs/receiving-orders.md quotes it verbatim)."""
    growing = [d for d in RETRY_DELAYS if d < BACKOFF_CAP]
    capped = len(RETRY_DELAYS) - len(growing)
    steps = ", ".join(_duration(d) for d in growing)
    if capped:
        steps += f", then every {_duration(BACKOFF_CAP)} ({capped} more)"
    return (
        f"{MAX_ATTEMPTS} tries: at once, then after {steps}; the last try is about "
        f"{round(GIVE_UP_AFTER_SECONDS / 3600)} h after the first"
    )


def sweep_seconds(env: Mapping[str, str]) -> float:
    """Return how often each worker's sweeper looks for due messages (ORDER_SWEEP_SECONDS)."""
    return env_seconds(
        env,
        "ORDER_SWEEP_SECONDS",
        SWEEP_SECONDS,
        0.05,
        3600,
        "how often each worker retries due order deliveries",
    )
