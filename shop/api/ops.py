"""Operations endpoints: /healthz (ok, or degraded with reasons) and /metrics (Prometheus).

/healthz runs every check and answers `{"status": "ok"}` or `{"status": "degraded",
"reasons": [{"check": …, "reason": …}]}`. Both answer 200 (a store with a stuck order
receiver still sells, so a load balancer must not take it out); `/healthz?strict=1` answers
503 when degraded, for uptime monitors that only read the status code. Reasons name counts,
ids and times, never secrets or buyer data.

A check is a function `() -> str | None` (a reason, or None when healthy), run inside the
app context. The built-in ones: orders undelivered past UNDELIVERED_SECONDS, the payment
provider failing, the database refusing a write. Other packages plug their own in without
importing this module: `app.extensions.setdefault(HEALTH_CHECKS, {})["name"] = check`
(a check of the same name replaces the built-in one).

/metrics answers a request from loopback that did not come through a proxy, or one with
`Authorization: Bearer $SHOP_METRICS_TOKEN`; anyone else gets 403 (README, Watching it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from shop import clock, metrics, orders
from shop.api.acp import json_response
from shop.security import bearer_token, constant_time_equals
from shop.state import get_state
from shop.storage import health, read, transaction
from shop.storage.transaction import write

bp = Blueprint("ops", __name__)

HEALTH_CHECKS = "shop.health_checks"  # app.extensions key: {name: () -> reason | None}
UNDELIVERED_SECONDS = 600  # an order message older than this and not delivered is news
PROVIDER_FAILING_SECONDS = 600  # a provider error this recent, with no answer since
# A real write (and commit): a read-only file, a full disk or a lost server all refuse it.
# The row lives in the 1970 hour of hourly_counts, which /status never reads.
_PROBE = text(
    "INSERT INTO hourly_counts (hour, name, n) VALUES (0, 'healthz_probe', 1) "
    "ON CONFLICT (hour, name) DO UPDATE SET n = hourly_counts.n + 1"
)
_PING = text("SELECT 1")
_LAST_PROBE = "shop.healthz_database_probe"  # app.extensions: (when, reason or None)
DATABASE_PROBE_SECONDS = 30


def _orders_check() -> str | None:
    now = clock.epoch()
    late = [
        (destination, state, count)
        for destination, state, count, oldest in orders.backlog()
        if now - oldest > UNDELIVERED_SECONDS or state in orders.STRANDED_STATES
    ]
    if not late:
        return None
    parts = ", ".join(f"{count} {state} to the {destination}" for destination, state, count in late)
    return (
        f"order messages not delivered (older than {UNDELIVERED_SECONDS // 60} minutes, or "
        f"given up, or dropped): {parts}; run `flask --app app orders failed`"
    )


def _provider_check() -> str | None:
    provider = get_state().provider.name
    found = metrics.samples()
    failed = metrics.total(found, "shop_provider_last_error_timestamp_seconds", provider=provider)
    answered = metrics.total(
        found, "shop_provider_last_answer_timestamp_seconds", provider=provider
    )
    if failed and failed > answered and clock.epoch() - failed < PROVIDER_FAILING_SECONDS:
        return (
            f"payment provider {provider}: the last call failed at {clock.iso(int(failed))} "
            "and none has been answered since; see the log for 'payment provider error'"
        )
    return None


def _database_check() -> str | None:
    # The file removed or replaced, its disk too full, a damaged file, failures met (issue 16)
    problems = health.problems()
    if problems:
        return " ".join(problems)
    # Writes wait for the writer lock: probe at most every DATABASE_PROBE_SECONDS per worker
    # and answer from the last probe in between, so /healthz stays quick under load (a read
    # on the WAL reader still runs every time).
    read(_PING)
    now = clock.epoch()
    last = current_app.extensions.get(_LAST_PROBE)
    if last is not None and now - last[0] < DATABASE_PROBE_SECONDS:
        return last[1]
    reason = None
    try:
        write(_PROBE)
        transaction.commit()
    except Exception as exc:  # any failure to write is the news; the type says which
        transaction.rollback()
        reason = f"a test write failed ({type(exc).__name__}); checkouts cannot be saved"
    current_app.extensions[_LAST_PROBE] = (now, reason)
    return reason


BUILT_IN: dict[str, Callable[[], str | None]] = {
    "orders": _orders_check,
    "payment_provider": _provider_check,
    "database": _database_check,
}


def health_reasons() -> list[dict[str, str]]:
    """Run every check; return [{check, reason}] for those that are not healthy."""
    checks = {**BUILT_IN, **current_app.extensions.get(HEALTH_CHECKS, {})}
    reasons = []
    for name, check in checks.items():
        try:
            reason = check()
        except Exception as exc:
            reason = f"the check itself failed ({type(exc).__name__})"
        if reason:
            reasons.append({"check": name, "reason": reason})
    return reasons


@bp.get("/healthz")
def healthz() -> Response:
    reasons = health_reasons()
    if not reasons:
        return json_response({"status": "ok"})
    strict = request.args.get("strict", "") not in ("", "0", "false")
    return json_response({"status": "degraded", "reasons": reasons}, 503 if strict else 200)


def _from_loopback() -> bool:
    # Behind nginx on the same host every request arrives from 127.0.0.1: one that carries
    # a proxy's forwarding header came from outside, whatever its address.
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def metrics_allowed() -> bool:
    """True for a scrape from loopback, or one with the SHOP_METRICS_TOKEN bearer token."""
    token = get_state().settings.secret("SHOP_METRICS_TOKEN")
    sent = bearer_token(request.headers.get("Authorization"))
    if token and sent is not None:
        return constant_time_equals(token, sent)
    return _from_loopback()


def _order_gauges() -> list[GaugeMetricFamily]:
    count = GaugeMetricFamily(
        "shop_orders_undelivered",
        "Order messages not delivered yet, by destination and state "
        "(pending, delivering, failed, gave_up, dropped).",
        labels=["destination", "state"],
    )
    oldest_age = GaugeMetricFamily(
        "shop_orders_undelivered_oldest_age_seconds",
        "Age of the oldest order message not delivered yet (0 when every one was).",
    )
    now = clock.epoch()
    counts = {(orders.MERCHANT, s): 0 for s in (*orders.OPEN_STATES, *orders.STRANDED_STATES)}
    age = 0
    for destination, state, n, oldest in orders.backlog():
        counts[(destination, state)] = n
        age = max(age, now - oldest)
    for (destination, state), n in sorted(counts.items()):
        count.add_metric([destination, state], n)
    oldest_age.add_metric([], age)
    return [count, oldest_age]


@bp.get("/metrics")
def metrics_text() -> Response:
    if not metrics_allowed():
        return Response(
            "metrics answer on loopback only, or with 'Authorization: Bearer <token>' where "
            "the token is the store's SHOP_METRICS_TOKEN environment variable\n",
            403,
            mimetype="text/plain",
        )
    return Response(metrics.render(_order_gauges()), mimetype="text/plain; version=0.0.4")
