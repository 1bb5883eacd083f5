"""The hot path's shortcuts give the same results as the slow paths they replace."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import InvalidRequestError

from shop import idempotency, session_rows, stock
from shop.checkout import paying
from shop.db import CheckoutSession, _compiled
from tests.conftest import AcpClient, RecordingSink, cart, join_deliveries, payment

_DIALECT = sqlite.dialect()
_T = CheckoutSession.__table__


def _slow(statement: Any, params: dict[str, Any]) -> tuple[Any, ...]:
    compiled = statement.compile(dialect=_DIALECT)
    values = compiled.construct_params(params)
    return tuple(values[name] for name in compiled.positiontup)


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        # literal values (notices, stock_reserved, the OPEN statuses) among named parameters
        (
            paying._CLAIM,
            {
                "c_id": "cs_1",
                "c_seen_cart": "{}",
                "c_status": "in_progress",
                "c_cart": '{"lines": []}',
                "c_now": 5,
                "c_email": None,
                "c_phone": "123",
            },
        ),
        (stock._RESERVE, {"id": "widget", "n": 2}),  # one name in two places
        (session_rows._FIND, {"s_id": "cs_1"}),
        (idempotency._FIND, {"k_scope": "s", "k_key": "k", "k_hash": "h"}),
        (stock._LEVELS, {}),
    ],
)
def test_arguments_match_construct_params(statement: Any, params: dict[str, Any]) -> None:
    entry = _compiled(statement, _DIALECT)
    assert entry is not None
    assert entry.args(params) == _slow(statement, params)


def test_a_named_value_for_a_literal_column_wins_as_in_construct_params() -> None:
    statement = update(_T).where(_T.c.id == bindparam("x_id")).values(notices="[]")
    entry = _compiled(statement, _DIALECT)
    assert entry is not None
    params = {"x_id": "cs_1", "notices": "[1]"}
    assert entry.args(params) == _slow(statement, params) == ("[1]", "cs_1")
    assert entry.args({"x_id": "cs_1"}) == ("[]", "cs_1")


def test_a_missing_parameter_still_raises_sqlalchemys_error() -> None:
    entry = _compiled(stock._RESERVE, _DIALECT)
    assert entry is not None
    with pytest.raises(InvalidRequestError) as raised:
        entry.args({"id": "widget"})
    assert raised.value.code == "cd3x"


def test_the_order_payload_reuses_the_quote_that_was_charged(make_app, monkeypatch):
    import shop.order_payload

    sink = RecordingSink()
    app = make_app(sink=sink)
    acp = AcpClient(app.test_client())
    created = acp.create(cart(("ebook-single", 2), address=None))
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]

    def no_second_pricing(*_args: Any) -> Any:
        raise AssertionError("the cart was priced again for the order payload")

    monkeypatch.setattr(shop.order_payload, "price_cart", no_second_pricing)
    done = acp.post(f"/checkout_sessions/{session_id}/complete", payment(), key="pay")
    assert done.status_code == 200, done.get_json()
    join_deliveries()
    charged = next(t["amount"] for t in done.get_json()["totals"] if t["type"] == "total")
    (order,) = sink.orders
    # The full payload (priced lines), not the fallback that sends unit amounts as 0.
    assert [(li["item_id"], li["quantity"], li["unit_amount"]) for li in order["line_items"]] == [
        ("ebook-single", 2, 1500)
    ]
    assert next(t["amount"] for t in order["totals"] if t["type"] == "total") == charged
