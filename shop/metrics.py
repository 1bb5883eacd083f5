"""Prometheus metrics and business events: what the store counts, and how /metrics reads it.

Counters and histograms are prometheus-client objects, incremented where the event happens
(checkout, orders, payments, the HTTP edges). Under gunicorn, `gunicorn.conf.py` sets
PROMETHEUS_MULTIPROC_DIR before any worker imports this module, so every worker writes its
values to files there and `render()` adds them up: each scrape sees the whole store, whichever
worker answers. Without it (tests, `flask run`, the CLI) values live in this process.

Gauges of the store's state (undelivered orders, their age) are not kept here: the caller
reads them from the database at scrape time and passes them to `render(extra)`.

`event(name, **fields)` logs one business event on the `shop.events` logger (one JSON line
each with SHOP_LOG_FORMAT=json); fields are ids, outcomes and reasons, never buyer data.

A shared module: imports no package of shop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

disable_created_metrics()  # the same series with or without the multiprocess directory

REGISTRY = CollectorRegistry(auto_describe=True)
# Seconds: resolves 5 ms to 30 s, with edges at 50 ms (a fast answer) and 5 s (the alert).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _counter(name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, help_text, tuple(labels), registry=REGISTRY)


# -------------------------------------------------------------- sessions and complete
SESSIONS_CREATED = _counter("shop_sessions_created", "Checkout sessions opened.")
SESSIONS_CANCELED = _counter("shop_sessions_canceled", "Checkout sessions canceled by the agent.")
SESSIONS_EXPIRED = _counter("shop_sessions_expired", "Checkout sessions that reached their TTL.")
CHECKOUTS_COMPLETED = _counter(
    "shop_checkouts_completed", "Checkout sessions completed (payment final).", ["via"]
)
# What one call to complete came to. The completion rate is completed / ATTEMPT_OUTCOMES.
COMPLETE_ATTEMPTS = _counter(
    "shop_complete_attempts", "Calls to complete a session, by outcome.", ["outcome"]
)
ATTEMPT_OUTCOMES = ("completed", "declined", "pending", "out_of_stock", "provider_error")
# Not counted as attempts to pay: a session not ready yet, or one already paid/over.
OTHER_OUTCOMES = ("not_ready", "not_open")
COMPLETE_SECONDS = Histogram(
    "shop_complete_duration_seconds",
    "Time to complete a session (reserve, charge, record), every surface.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

# -------------------------------------------------------------- payments
PAYMENT_DECLINES = _counter(
    "shop_payment_declines", "Payment attempts declined by the provider.", ["via"]
)
PAYMENT_FAILURES = _counter(
    "shop_payment_failures",
    "Payments that failed, by provider and reason (decline code, provider_error, "
    "provider_unavailable, webhook_failed).",
    ["provider", "reason"],
)
# When the provider last failed to answer (an error, not a decline) and last answered: the
# newest of any worker ("max"), so /healthz in any worker sees the same.
PROVIDER_LAST_ERROR = Gauge(
    "shop_provider_last_error_timestamp_seconds",
    "When a call to the payment provider last failed (Unix time).",
    ["provider"],
    multiprocess_mode="max",
    registry=REGISTRY,
)
PROVIDER_LAST_ANSWER = Gauge(
    "shop_provider_last_answer_timestamp_seconds",
    "When the payment provider last answered a charge (paid, declined or pending; Unix time).",
    ["provider"],
    multiprocess_mode="max",
    registry=REGISTRY,
)
# Issue 14: the merchant's setup refused (a key, a permission, a parameter), attempts whose
# outcome the provider left unknown, and second payments for a paid session (refunded).
PAYMENT_SETUP_ERRORS = _counter(
    "shop_payment_setup_errors",
    "Payments refused for the store's own payment setup (keys, permissions, parameters).",
    ["provider"],
)
PAYMENT_OUTCOME_UNKNOWN = _counter(
    "shop_payment_outcome_unknown", "Payment attempts whose outcome is not known yet."
)
DUPLICATE_PAYMENTS = _counter(
    "shop_duplicate_payments",
    "Second payments for an already paid session, by outcome (refunded, refund_failed).",
    ["outcome"],
)
WEBHOOK_SIGNATURE_FAILURES = _counter(
    "shop_webhook_signature_failures",
    "Provider webhooks rejected for their signature.",
    ["provider"],
)
WEBHOOK_MALFORMED = _counter(
    "shop_webhook_malformed", "Signed provider webhooks whose body could not be read.", ["provider"]
)
WEBHOOK_EVENTS = _counter(
    "shop_webhook_events", "Provider webhook events received, by outcome.", ["outcome"]
)

# -------------------------------------------------------------- stock, idempotency, orders
STOCK_OUTS = _counter(
    "shop_stock_outs", "Reservations refused because an item had too few left.", ["item"]
)
IDEMPOTENCY = _counter(
    "shop_idempotent_requests",
    "Requests answered from an Idempotency-Key record, by outcome (replayed, conflict, in_flight).",
    ["outcome"],
)
ORDER_DELIVERIES = _counter(
    "shop_order_deliveries",
    "Order hand-offs to the merchant, by outcome.",
    ["destination", "outcome"],
)

# -------------------------------------------------------------- HTTP
HTTP_SECONDS = Histogram(
    "shop_http_request_duration_seconds",
    "HTTP requests by endpoint (Flask endpoint name), method and status class.",
    ["endpoint", "method", "code"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

for _outcome in ATTEMPT_OUTCOMES + OTHER_OUTCOMES:
    COMPLETE_ATTEMPTS.labels(outcome=_outcome)  # every outcome exists from the start at 0
CHECKOUTS_COMPLETED.labels(via="complete")

_BY_NAME: dict[str, Counter] = {}
_lock = threading.Lock()


def _exposed_name(counter: Counter) -> str:
    return counter._name + "_total"  # prometheus-client strips _total from the name it keeps


def inc(name: str, amount: float = 1, **labels: str) -> None:
    """Add to a counter by its exposed name (e.g. shop_order_deliveries_total)."""
    if not _BY_NAME:
        with _lock:
            for value in globals().values():
                if isinstance(value, Counter):
                    _BY_NAME[_exposed_name(value)] = value
    counter = _BY_NAME[name]
    (counter.labels(**labels) if labels else counter).inc(amount)


def multiprocess_dir() -> str | None:
    """The directory worker processes share their values through, when one is set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _registry() -> CollectorRegistry:
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return registry


class _Fixed:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render(extra: Iterable[Metric] = ()) -> bytes:
    """Every metric of every worker in the Prometheus text format, plus `extra` families."""
    text = generate_latest(_registry())
    extra = list(extra)
    if extra:
        fixed = CollectorRegistry(auto_describe=False)
        fixed.register(_Fixed(extra))
        text += generate_latest(fixed)
    return text


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples() -> Samples:
    """Every sample of every worker: {(name, sorted label pairs): value}."""
    found: Samples = {}
    for family in _registry().collect():
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            found[key] = found.get(key, 0.0) + sample.value
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, pairs), v in found.items() if n == name and want <= set(pairs))


def quantile(found: Samples, name: str, q: float, **labels: str) -> float | None:
    """Estimate a quantile of a histogram as the upper edge of its bucket (None: no data)."""
    buckets: dict[float, float] = {}
    want = set(labels.items())
    for (n, pairs), value in found.items():
        if n != name + "_bucket" or not want <= set(pairs):
            continue
        le = float(dict(pairs)["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    if not buckets or buckets.get(float("inf"), 0.0) == 0:
        return None
    count = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * count:
            return le
    return None


# -------------------------------------------------------------- business events
_events = logging.getLogger("shop.events")


def event(name: str, **fields: str | int | float | None) -> None:
    """Log one business event (session_completed, payment_failed, order_delivered, …)."""
    _events.info(name, extra={"shop_event": {"event": name, **fields}})


def event_fields(record: logging.LogRecord) -> Mapping[str, object] | None:
    """The fields of a business event's log record (None for any other record)."""
    return getattr(record, "shop_event", None)
