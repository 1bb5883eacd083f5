"""The feed blueprint over HTTP: content types, live stock, ETag/Last-Modified and Basic auth.

Builds a minimal Flask app around `shop.api.feeds.bp` with a real SQLite stock table, so the
feeds read live counts exactly as in production.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shop.api import feeds
from shop.checkout.stock import seed_stock, set_stock
from shop.config.catalog import load_catalog
from shop.state import ShopState
from shop.storage.models import db, init_db
from tests.test_feeds import FEED_DOCUMENT, PRODUCTS, make_settings

URLS = ["/feeds/products.json", "/feeds/google.xml", "/feeds/shopify.csv"]
PRODUCTS_MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z
CONFIG_MTIME = PRODUCTS_MTIME - 3600
UNLIMITED = [{"id": "ebook", "title": "E-Book", "price": 1500, "inventory": None}]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Any]:
    """Return a factory: make_client(products=..., env=..., **config) -> test client."""
    apps: list[Flask] = []

    def factory(
        products: list[dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        **config: Any,
    ) -> FlaskClient:
        home = tmp_path / f"app{len(apps)}"
        home.mkdir()
        products_path = home / "products.json"
        products_path.write_text(json.dumps(products or PRODUCTS), encoding="utf-8")
        settings = make_settings(
            home, env={"SHOP_PRODUCTS": str(products_path), **(env or {})}, **config
        )
        os.utime(products_path, (PRODUCTS_MTIME, PRODUCTS_MTIME))
        os.utime(settings.config_path, (CONFIG_MTIME, CONFIG_MTIME))
        catalog = load_catalog(str(products_path))
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{home / 'shop.sqlite3'}"
        init_db(app)
        app.extensions["shop"] = ShopState(
            settings=settings, catalog=catalog, provider=None, sink=None
        )
        app.register_blueprint(feeds.bp)
        with app.app_context():
            seed_stock(catalog)
        apps.append(app)
        return app.test_client()

    yield factory
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def client(make_client: Any) -> FlaskClient:
    return make_client()


def set_count(client: FlaskClient, item_id: str, qty: int) -> None:
    with client.application.app_context():
        assert set_stock(item_id, qty)


def test_content_types_and_bodies(client: FlaskClient) -> None:
    response = client.get("/feeds/products.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    FEED_DOCUMENT.validate(response.get_json())

    response = client.get("/feeds/google.xml")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert ET.fromstring(response.data).tag == "rss"

    response = client.get("/feeds/shopify.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert rows[0]["Handle"] == "widget"


def test_feeds_show_live_stock(client: FlaskClient) -> None:
    set_count(client, "widget", 0)
    variants = {
        v["id"]: v
        for p in client.get("/feeds/products.json").get_json()["products"]
        for v in p["variants"]
    }
    assert variants["widget"]["availability"]["status"] == "out_of_stock"
    assert variants["shirt-red-s"]["availability"]["status"] == "in_stock"
    assert variants["ebook"]["availability"]["status"] == "in_stock"  # unlimited, no counter

    rows = csv.DictReader(io.StringIO(client.get("/feeds/shopify.csv").get_data(as_text=True)))
    quantities = {r["Variant SKU"]: r["Variant Inventory Qty"] for r in rows}
    assert quantities["widget"] == "0" and quantities["SH-R-S"] == "10"


@pytest.mark.parametrize("url", URLS)
def test_validators_and_cache_headers(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    etag, weak = response.get_etag()
    assert etag and not weak
    assert response.headers["Last-Modified"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("url", URLS)
def test_if_none_match_answers_304(client: FlaskClient, url: str) -> None:
    first = client.get(url)
    etag = first.headers["ETag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "no-cache"  # RFC 9110 §15.4.5: sent on a 304 too
    assert client.get(url, headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize("url", URLS)
def test_a_stock_change_changes_the_etag(client: FlaskClient, url: str) -> None:
    etag = client.get(url).headers["ETag"]
    set_count(client, "widget", 0)
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag


def test_if_none_match_wins_over_if_modified_since(client: FlaskClient) -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    response = client.get(
        "/feeds/products.json", headers={"If-None-Match": '"stale"', "If-Modified-Since": future}
    )
    assert response.status_code == 200


def test_if_modified_since_is_not_trusted_while_stock_is_tracked(client: FlaskClient) -> None:
    # A sale changes stock without touching products.json, so a date cannot prove freshness.
    last_modified = client.get("/feeds/google.xml").headers["Last-Modified"]
    response = client.get("/feeds/google.xml", headers={"If-Modified-Since": last_modified})
    assert response.status_code == 200 and response.data


@pytest.mark.parametrize("url", URLS)
def test_if_modified_since_answers_304_for_unlimited_catalogs(make_client: Any, url: str) -> None:
    client = make_client(products=UNLIMITED)
    last_modified = client.get(url).headers["Last-Modified"]
    assert parsedate_to_datetime(last_modified).timestamp() == PRODUCTS_MTIME
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    earlier = format_datetime(datetime.fromtimestamp(PRODUCTS_MTIME - 1, UTC), usegmt=True)
    assert client.get(url, headers={"If-Modified-Since": earlier}).status_code == 200


def test_last_modified_follows_the_newer_of_products_and_config(make_client: Any) -> None:
    client = make_client()
    settings = client.application.extensions["shop"].settings
    later = PRODUCTS_MTIME + 86_400
    os.utime(settings.config_path, (later, later))
    response = client.get("/feeds/products.json")
    assert parsedate_to_datetime(response.headers["Last-Modified"]).timestamp() == later


# --- Basic auth ------------------------------------------------------------------------------

AUTH_CONFIG = {"feed": {"basicAuthUser": "merchant"}, "storeName": 'Bob\'s "Café" 東京'}


@pytest.fixture
def locked(make_client: Any) -> FlaskClient:
    return make_client(env={"FEED_PASSWORD": "s3cret-pw"}, **AUTH_CONFIG)


def _assert_challenge(response: Any) -> None:
    assert response.status_code == 401
    assert response.mimetype == "text/plain"
    assert (
        response.headers["WWW-Authenticate"]
        == 'Basic realm="Bob\'s Caf? ?? feeds", charset="UTF-8"'
    )
    text = response.get_data(as_text=True).strip()
    assert text.endswith(".") and text.count(". ") == 0 and "s3cret" not in text


@pytest.mark.parametrize("url", URLS)
def test_basic_auth_accepts_the_configured_credentials(locked: FlaskClient, url: str) -> None:
    response = locked.get(url, auth=("merchant", "s3cret-pw"))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    "auth", [None, ("merchant", "wrong"), ("someone", "s3cret-pw"), ("merchant", ""), ("", "")]
)
def test_basic_auth_refuses_everything_else(
    locked: FlaskClient, url: str, auth: tuple[str, str] | None
) -> None:
    _assert_challenge(locked.get(url, auth=auth))


def test_basic_auth_refuses_bearer_tokens(locked: FlaskClient) -> None:
    response = locked.get("/feeds/products.json", headers={"Authorization": "Bearer s3cret-pw"})
    _assert_challenge(response)


def test_basic_auth_comes_before_revalidation(locked: FlaskClient) -> None:
    etag = locked.get("/feeds/products.json", auth=("merchant", "s3cret-pw")).headers["ETag"]
    response = locked.get("/feeds/products.json", headers={"If-None-Match": etag})
    _assert_challenge(response)
    assert "ETag" not in response.headers


def test_basic_auth_without_feed_password_refuses_and_says_why(
    make_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(**AUTH_CONFIG)
    with caplog.at_level(logging.ERROR, logger="shop.feeds"):
        _assert_challenge(client.get("/feeds/google.xml", auth=("merchant", "")))
    assert "FEED_PASSWORD" in caplog.text


def test_no_auth_configured_means_open_feeds(make_client: Any) -> None:
    client = make_client(env={"FEED_PASSWORD": "unused"})
    assert client.get("/feeds/products.json").status_code == 200


# --- through the real create_app, on the shipped sample files ---------------------------------

SAMPLE = {
    "SHOP_CONFIG": str(Path(__file__).resolve().parents[1] / "config.json"),
    "SHOP_PRODUCTS": str(Path(__file__).resolve().parents[1] / "products.json"),
}


def _sample_client(make_app: Any) -> FlaskClient:
    return make_app(env=SAMPLE).test_client()


def test_products_json_smoke_through_create_app(make_app: Any) -> None:
    response = _sample_client(make_app).get("/feeds/products.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    FEED_DOCUMENT.validate(document)
    assert {p["id"] for p in document["products"]} >= {"canvas-tote", "enamel-mug"}


def test_google_xml_smoke_through_create_app(make_app: Any) -> None:
    response = _sample_client(make_app).get("/feeds/google.xml")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    items = ET.fromstring(response.data).findall("./channel/item")
    g = "{http://base.google.com/ns/1.0}"
    ids = {item.findtext(f"{g}id") for item in items}
    assert {"canvas-tote", "enamel-mug-navy"} <= ids
    assert all(item.findtext(f"{g}price", "").endswith(" USD") for item in items)


def test_shopify_csv_smoke_through_create_app(make_app: Any) -> None:
    response = _sample_client(make_app).get("/feeds/shopify.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
    first = {r["Handle"]: r for r in rows if r["Title"]}
    # the sample's categories are taxonomy paths, passed through to Product Category
    assert first["field-guide-license"]["Product Category"] == "Media > Books"
    assert first["field-guide-license"]["Type"] == "Books"
    assert first["canvas-tote"]["Variant Inventory Qty"] == "25"
