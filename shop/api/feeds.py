"""The feed endpoints: /feeds/products.json, /feeds/google.xml, /feeds/shopify.csv.

Caching: the `ETag` is a hash of the rendered body, so it changes whenever anything in the
feed does (a product, a setting, or live stock) and `If-None-Match` revalidation is exact.
`Last-Modified` is the newer of products.json's and config.json's modification times. Stock
changes move neither file date, so `If-Modified-Since` alone earns a 304 only for a catalog
whose every item is unlimited; with tracked stock the client gets the fresh body (RFC 9110
lets a server ignore If-Modified-Since). `Cache-Control: no-cache` keeps caches from
guessing freshness from an old Last-Modified.

Optional HTTP Basic auth: when config.json `feed.basicAuthUser` is set, requests must carry
that user and the FEED_PASSWORD environment secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, Response, request

from shop.checkout.stock import available_quantities
from shop.config.catalog import Catalog
from shop.config.settings import Settings
from shop.feeds import Availability, google, shopify
from shop.feeds import json as acp_json
from shop.state import ShopState, get_state

bp = Blueprint("feeds", __name__)
log = logging.getLogger("shop.feeds")

Renderer = Callable[[Catalog, Settings, Availability], bytes]


@bp.get("/feeds/products.json")
def products_json() -> Response:
    return _serve(acp_json.render, "application/json")


@bp.get("/feeds/google.xml")
def google_xml() -> Response:
    return _serve(google.render, "application/xml")


@bp.get("/feeds/shopify.csv")
def shopify_csv() -> Response:
    return _serve(shopify.render, "text/csv; charset=utf-8")


def _availability(state: ShopState) -> Availability:
    """Return live stock by item id (the seam tests may replace)."""
    return available_quantities(state.catalog)


def _serve(render: Renderer, content_type: str) -> Response:
    state = get_state()
    settings = state.settings
    denied = _check_auth(settings)
    if denied is not None:
        return denied
    availability = _availability(state)
    body = render(state.catalog, settings, availability)
    etag = hashlib.sha256(body).hexdigest()[:32]
    last_modified = _last_modified(settings)
    headers = {
        "Cache-Control": "private, no-cache" if settings.feed_basic_auth_user else "no-cache"
    }
    if _not_modified(etag, last_modified, all(q is None for q in availability.values())):
        response = Response(status=304, headers=headers)
    else:
        response = Response(body, headers=headers, content_type=content_type)
    response.set_etag(etag)
    if last_modified is not None:
        response.last_modified = last_modified
    return response


def _not_modified(etag: str, last_modified: datetime | None, stock_untracked: bool) -> bool:
    """Apply RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if request.if_none_match:
        return request.if_none_match.contains_weak(etag)
    since = request.if_modified_since
    return bool(stock_untracked and since and last_modified and last_modified <= since)


def _last_modified(settings: Settings) -> datetime | None:
    """Return the newer mtime of products.json and config.json, in whole seconds, or None."""
    times = []
    for path in (settings.products_path, settings.config_path):
        try:
            times.append(int(os.stat(path).st_mtime))
        except OSError:
            continue
    return datetime.fromtimestamp(max(times), UTC) if times else None


def _check_auth(settings: Settings) -> Response | None:
    """Return a 401 response unless auth is off or the request carries the right credentials."""
    user = settings.feed_basic_auth_user
    if not user:
        return None
    password = settings.secret("FEED_PASSWORD")
    if password is None:
        log.error(
            "config.json sets feed.basicAuthUser but FEED_PASSWORD is not set in the "
            "environment; every feed request is refused until it is."
        )
    auth = request.authorization
    if auth is not None and auth.type == "basic" and password is not None:
        # Compare both parts every time so the timing says nothing about which one was wrong.
        user_ok = hmac.compare_digest((auth.username or "").encode(), user.encode())
        password_ok = hmac.compare_digest((auth.password or "").encode(), password.encode())
        if user_ok & password_ok:
            return None
    return Response(
        "This feed needs the store's feed user name and password (HTTP Basic auth).\n",
        status=401,
        content_type="text/plain; charset=utf-8",
        headers={
            "WWW-Authenticate": f'Basic realm="{_realm(settings.store_name)}", charset="UTF-8"'
        },
    )


def _realm(store_name: str) -> str:
    """Make the store name safe inside a quoted, ASCII-only header parameter."""
    cleaned = "".join(c for c in store_name if c.isprintable() and c not in '"\\')
    return f"{cleaned} feeds".encode("ascii", "replace").decode("ascii")
