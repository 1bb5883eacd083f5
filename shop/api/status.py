"""The merchant's status page, /status: is checkout working today, and what needs a hand.

Behind SHOP_ADMIN_TOKEN (without it the page refuses to serve, 503). A browser signs in by
posting the token once and gets a cookie (HttpOnly, SameSite=Strict, path /status, 12 hours)
made from it, so changing the token signs everyone out; a script sends `Authorization: Bearer
<token>` instead. The replay button is a POST with a CSRF token tied to the cookie.

Server-rendered, no scripts, no external assets: the chart is inline SVG.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request

from shop import clock, metrics, orders
from shop.api import ops
from shop.checkout import stock, tally
from shop.security import bearer_token, constant_time_equals, hmac_sha256_hex
from shop.state import get_state

bp = Blueprint("status", __name__, template_folder="templates")

COOKIE = "shop_status"
COOKIE_SECONDS = 12 * 3600
LOW_STOCK = 5  # an item with this many or fewer left is listed as low
_SECRETS = (
    "SHOP_API_KEYS",
    "ORDER_WEBHOOK_SECRET",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "RAZORPAY_KEY_SECRET",
    "RAZORPAY_WEBHOOK_SECRET",
    "FORTER_WEBHOOK_SECRET",
    "ACP_SIGNING_SECRET",
    "ACP_WEBHOOK_SECRET",
    "FEED_PASSWORD",
    "SHOP_METRICS_TOKEN",
)


MIN_TOKEN_LENGTH = 16


def _token() -> str | None:
    """The admin token, or None when it is unset or too short to resist guessing."""
    token = get_state().settings.secret("SHOP_ADMIN_TOKEN")
    return token if token and len(token) >= MIN_TOKEN_LENGTH else None


def _mac(token: str, purpose: str, value: str) -> str:
    return hmac_sha256_hex(token, f"{purpose}:{value}")


def _cookie_session(token: str) -> str | None:
    """The signed-in browser's session value (issued.nonce), or None."""
    raw = request.cookies.get(COOKIE, "")
    issued, _, rest = raw.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued.isdigit() and nonce and mac):
        return None
    value = f"{issued}.{nonce}"
    if not constant_time_equals(mac, _mac(token, "status", value)):
        return None
    if clock.epoch() - int(issued) > COOKIE_SECONDS:
        return None
    return value


def _csrf(token: str, session: str) -> str:
    return _mac(token, "csrf", session)


def _refuse_unconfigured() -> Response:
    return Response(
        "The status page is off: set SHOP_ADMIN_TOKEN in the environment to a random value "
        f"of at least {MIN_TOKEN_LENGTH} characters (e.g. the output of `openssl rand -hex "
        "24`) and restart the store.\n",
        503,
        mimetype="text/plain",
    )


def _page(body: str, status: int = 200) -> Response:
    response = Response(body, status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _login(error: str | None = None, status: int = 401) -> Response:
    return _page(render_template("status_login.html", error=error), status)


@bp.get("/status")
def status_page() -> Response:
    token = _token()
    if not token:
        return _refuse_unconfigured()
    session = _cookie_session(token)
    bearer = bearer_token(request.headers.get("Authorization"))
    if session is None and not (bearer and constant_time_equals(bearer, token)):
        return _login()
    csrf = _csrf(token, session) if session else ""
    return _page(render_template("status.html", csrf=csrf, **status_view()))


@bp.post("/status/login")
def login() -> Response:
    token = _token()
    if not token:
        return _refuse_unconfigured()
    # No delay on a wrong token (it would let anyone tie up every worker): the token is long
    # and random (MIN_TOKEN_LENGTH), so guessing it is hopeless anyway.
    if not constant_time_equals(request.form.get("token", ""), token):
        return _login("That is not the store's SHOP_ADMIN_TOKEN.")
    value = f"{clock.epoch()}.{secrets.token_urlsafe(16)}"
    response = redirect("/status", 303)
    response.set_cookie(
        COOKIE,
        f"{value}.{_mac(token, 'status', value)}",
        max_age=COOKIE_SECONDS,
        path="/status",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/status/logout")
def logout() -> Response:
    response = redirect("/status", 303)
    response.delete_cookie(COOKIE, path="/status")
    return response


@bp.post("/status/replay")
def replay() -> Response:
    token = _token()
    if not token:
        return _refuse_unconfigured()
    session = _cookie_session(token)
    bearer = bearer_token(request.headers.get("Authorization"))
    if session is not None:
        # A browser's cookie rides along on any site's form post: the CSRF token proves the
        # form is the one this page rendered. A bearer token is never sent by a browser alone.
        if not constant_time_equals(request.form.get("csrf", ""), _csrf(token, session)):
            return Response(
                "The form is stale or was not sent by the status page (CSRF token "
                "mismatch); reload /status and press replay again.\n",
                403,
                mimetype="text/plain",
            )
    elif not (bearer and constant_time_equals(bearer, token)):
        return _login()
    session_id = request.form.get("session_id", "")
    rows = orders.replay(get_state(), session_id) if session_id else []
    outcome = ", ".join(f"{row.event} -> {row.destination}: {row.state}" for row in rows)
    note = f"Replayed {session_id}: {outcome}" if rows else f"No order for '{session_id}'"
    return _page(
        render_template(
            "status.html", csrf=_csrf(token, session) if session else "", note=note, **status_view()
        ),
    )


# ---------------------------------------------------------------- what the page shows


def _today(now: int) -> dict[str, Any]:
    midnight = now - now % 86400
    counts: dict[str, int] = {}
    for _hour, name, n in tally.since(midnight):
        counts[name] = counts.get(name, 0) + n
    failures = {
        name.removeprefix("payment_failed."): n
        for name, n in sorted(counts.items())
        if name.startswith("payment_failed.")
    }
    completed = counts.get("completed", 0)
    tried = completed + sum(failures.values()) + counts.get("out_of_stock", 0)
    return {
        "created": counts.get("sessions_created", 0),
        "completed": completed,
        "canceled": counts.get("canceled", 0),
        "expired": counts.get("expired", 0),
        "out_of_stock": counts.get("out_of_stock", 0),
        "failures": failures,
        "rate": None if tried == 0 else round(100 * completed / tried, 1),
    }


def _chart(now: int) -> dict[str, Any]:
    """Completions per hour for the last 24 hours, as bar geometry for inline SVG."""
    this_hour = now - now % 3600
    first = this_hour - 23 * 3600
    per_hour = dict.fromkeys(range(first, this_hour + 1, 3600), 0)
    for hour, name, n in tally.since(first):
        if name == "completed" and hour in per_hour:
            per_hour[hour] += n
    top = max(per_hour.values()) or 1
    bars = []
    for index, (hour, n) in enumerate(per_hour.items()):
        height = round(100 * n / top, 1)
        bars.append(
            {
                "x": 30 + index * 12,
                "y": 110 - height,
                "height": height,
                "count": n,
                "label": clock.iso(hour)[11:16],
                "show_label": index % 6 == 0 or index == 23,
            }
        )
    return {"bars": bars, "top": max(per_hour.values()), "total": sum(per_hour.values())}


def _configuration() -> list[tuple[str, str]]:
    state = get_state()
    settings = state.settings
    url = getattr(settings, "order_webhook_url", None)
    where = "not set: orders are only logged" if not url else urlsplit(url).netloc
    provider = state.provider.name
    mode = (
        "offline test"
        if provider == "test"
        else ("test mode" if state.provider.test_mode else "LIVE")
    )
    rows = [
        ("Store", settings.store_name),
        ("Currency", settings.currency.upper()),
        ("Payment provider", f"{provider} ({mode})"),
        ("Orders go to", where),
        ("Session lifetime", f"{settings.session_ttl_minutes} minutes"),
        ("ACP versions", ", ".join(sorted(settings.acp_versions))),
        ("Demo mode", "yes (API key 'demo')" if settings.demo_mode else "no"),
    ]
    set_names = [name for name in _SECRETS if settings.secret(name)]
    rows.append(("Secrets set", ", ".join(set_names) or "none"))
    return rows


def status_view() -> dict[str, Any]:
    """Everything the page shows (no secrets, no buyer data)."""
    state = get_state()
    now = clock.epoch()
    found = metrics.samples()
    p95 = metrics.quantile(found, "shop_complete_duration_seconds", 0.95)
    if p95 is None:
        p95_text = "—"
    elif p95 == float("inf"):
        p95_text = f"> {metrics.LATENCY_BUCKETS[-1]:g} s"
    else:
        p95_text = f"≤ {round(p95 * 1000)} ms"  # the upper edge of the bucket holding it
    available = stock.available_quantities(state.catalog)
    low = sorted(
        (item_id, qty) for item_id, qty in available.items() if qty is not None and qty <= LOW_STOCK
    )
    undelivered = [
        {
            "session_id": row.session_id,
            "order_id": row.order_id,
            "event": row.event,
            "destination": row.destination,
            "state": row.state,
            "attempts": row.attempts,
            "since": clock.iso(row.created_at),
            "error": (row.last_error or "")[:160],
        }
        for row in orders.undelivered()
    ]
    return {
        "now": clock.iso(now),
        "reasons": ops.health_reasons(),
        "today": _today(now),
        "p95": p95_text,
        "completes_since_start": int(metrics.total(found, "shop_complete_duration_seconds_count")),
        "undelivered": undelivered,
        "low_stock": low,
        "low_stock_limit": LOW_STOCK,
        "configuration": _configuration(),
        "chart": _chart(now),
    }
