"""A cart's assessment reads the stock counters again only when it could matter (issue 12):
an item with stock to spare is assessed against this process's read of the last second; a
nearly sold-out one is read every time; a reservation here forgets the read; and whatever
an assessment says, the reservation's conditional UPDATE never sells what is not there."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from shop.checkout import stock
from tests.conftest import AcpClient, cart


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    counted: list[int] = []
    real = stock.available_quantities

    def counting(catalog: Any) -> Any:
        counted.append(1)
        return real(catalog)

    monkeypatch.setattr(stock, "available_quantities", counting)
    return counted


def _store(make_app, shop_files, widgets: int) -> AcpClient:
    products = json.loads(shop_files["products"].read_text())
    next(p for p in products if p["id"] == "widget")["inventory"] = widgets
    shop_files["products"].write_text(json.dumps(products))
    return AcpClient(make_app().test_client())


def _set_widgets(shop_files, qty: int) -> None:
    conn = sqlite3.connect(shop_files["db"])  # another worker's sales, as this one sees them
    with conn:
        conn.execute("UPDATE stock_levels SET qty = ? WHERE item_id = 'widget'", (qty,))
    conn.close()


def test_stock_to_spare_is_read_once_a_second_not_once_a_request(make_app, shop_files, reads):
    acp = _store(make_app, shop_files, widgets=100_000)
    for _ in range(5):
        assert acp.create(cart(("widget", 2))).status_code == 201
    assert len(reads) == 1


def test_a_nearly_sold_out_item_is_read_every_time(make_app, shop_files, reads):
    acp = _store(make_app, shop_files, widgets=stock.PLENTY)  # 1000 < 2 + PLENTY
    for _ in range(3):
        assert acp.create(cart(("widget", 2))).status_code == 201
    assert len(reads) == 3
    _set_widgets(shop_files, 1)  # sold by another worker meanwhile: seen at once
    body = acp.create(cart(("widget", 2))).get_json()
    assert [m["code"] for m in body["messages"]] == ["out_of_stock"]


def test_a_reservation_here_is_subtracted_from_the_read(make_app, shop_files, reads):
    acp = _store(make_app, shop_files, widgets=stock.PLENTY + 2)
    session_id = acp.create(cart(("widget", 1))).get_json()["id"]  # read: 1002, plenty for 1
    assert len(reads) == 1
    assert acp.complete(session_id).get_json()["status"] == "completed"  # 1001 left
    session_id = acp.create(cart(("widget", 1))).get_json()["id"]
    assert len(reads) == 1  # 1001 is still 1 + PLENTY: no new read
    assert acp.complete(session_id).get_json()["status"] == "completed"  # 1000 left
    acp.create(cart(("widget", 1)))
    assert len(reads) == 2  # 1000 is not: read afresh


def test_a_shortage_here_forgets_the_read(make_app, shop_files, reads):
    acp = _store(make_app, shop_files, widgets=100_000)
    session_id = acp.create(cart(("widget", 1))).get_json()["id"]
    _set_widgets(shop_files, 0)  # sold elsewhere: this reservation finds none
    assert acp.complete(session_id).get_json()["status"] != "completed"
    before = len(reads)
    acp.create(cart(("widget", 1)))
    assert len(reads) == before + 1


def test_a_stale_plenty_never_sells_what_is_gone(make_app, shop_files, monkeypatch):
    acp = _store(make_app, shop_files, widgets=100_000)
    session_id = acp.create(cart(("widget", 1))).get_json()["id"]  # read: plenty
    _set_widgets(shop_files, 0)  # then every widget sold elsewhere within the second
    done = acp.complete(session_id).get_json()
    assert done["status"] != "completed"
    assert "out_of_stock" in [m.get("code") for m in done.get("messages", [])] + [done.get("code")]
    conn = sqlite3.connect(shop_files["db"])
    assert conn.execute("SELECT qty FROM stock_levels WHERE item_id = 'widget'").fetchone() == (0,)
    conn.close()
    monkeypatch.setattr(stock, "TRUST_SECONDS", 0.0)  # a second later: the sale is seen
    body = acp.create(cart(("widget", 1))).get_json()
    assert [m["code"] for m in body["messages"]] == ["out_of_stock"]
