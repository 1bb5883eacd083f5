"""The hot path's shortcuts give the same results as the slow paths they replace."""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.sql.base import Executable

import shop
from shop.api import idempotency
from shop.checkout import paying, session_rows, stock
from shop.storage.compiled_sql import compile_once
from shop.storage.models import CheckoutSession
from tests.conftest import ADDRESS_CA, AcpClient, RecordingSink, cart, join_deliveries, payment

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
    entry = compile_once(statement, _DIALECT)
    assert entry is not None
    assert entry.args(params) == _slow(statement, params)


def test_a_named_value_for_a_literal_column_wins_as_in_construct_params() -> None:
    statement = update(_T).where(_T.c.id == bindparam("x_id")).values(notices="[]")
    entry = compile_once(statement, _DIALECT)
    assert entry is not None
    params = {"x_id": "cs_1", "notices": "[1]"}
    assert entry.args(params) == _slow(statement, params) == ("[1]", "cs_1")
    assert entry.args({"x_id": "cs_1"}) == ("[]", "cs_1")


def test_a_missing_parameter_still_raises_sqlalchemys_error() -> None:
    entry = compile_once(stock._RESERVE, _DIALECT)
    assert entry is not None
    with pytest.raises(InvalidRequestError) as raised:
        entry.args({"id": "widget"})
    assert raised.value.code == "cd3x"


def test_the_order_payload_reuses_the_quote_that_was_charged(make_app, monkeypatch):
    import shop.orders.payload

    sink = RecordingSink()
    app = make_app(sink=sink)
    acp = AcpClient(app.test_client())
    created = acp.create(cart(("ebook-single", 2), address=None))
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]

    def no_second_pricing(*_args: Any) -> Any:
        raise AssertionError("the cart was priced again for the order payload")

    monkeypatch.setattr(shop.orders.payload, "price_cart", no_second_pricing)
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


def test_complete_reads_the_session_once_and_decodes_its_cart_once(make_app, monkeypatch):
    from shop import fast_json
    from shop.checkout import session_rows as rows

    sink = RecordingSink()
    app = make_app(sink=sink)
    acp = AcpClient(app.test_client())
    created = acp.create(cart(("ebook-single", 2), address=None))
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]

    reads: list[str] = []
    decoded: list[str] = []
    real_find, real_load, real_loads = rows.find, rows.load, fast_json.loads

    def counting_find(sid: str) -> Any:
        reads.append(sid)
        return real_find(sid)

    def counting_load(sid: str) -> Any:
        reads.append(sid)
        return real_load(sid)

    def counting_loads(text: Any) -> Any:
        value = real_loads(text)
        if isinstance(value, dict) and "lines" in value:  # a session's stored cart
            decoded.append(text)
        return value

    monkeypatch.setattr(rows, "find", counting_find)
    monkeypatch.setattr(rows, "load", counting_load)
    monkeypatch.setattr(fast_json, "loads", counting_loads)
    done = acp.post(f"/checkout_sessions/{session_id}/complete", payment(), key="pay")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed"
    join_deliveries()
    assert reads == [session_id], "the session row is read once along complete"
    assert len(decoded) == 1, "its stored cart is decoded once along complete"
    assert len(sink.orders) == 1


def _construct_params_args(entry: Any, params: Any) -> tuple[Any, ...]:
    values = entry.compiled.construct_params(params or {})
    return tuple(values[name] for name in entry.positions)


def _same(got: tuple[Any, ...], expected: tuple[Any, ...]) -> bool:
    return len(got) == len(expected) and all(a is b for a, b in zip(got, expected, strict=True))


def test_every_statement_of_a_checkout_gets_construct_params_own_args(acp, monkeypatch):
    """The precomputed plans answer as construct_params would, for each statement sent."""
    planned: dict[str, bool] = {}
    original = shop.storage.compiled_sql.Compiled.args

    def checked(entry: Any, params: Any) -> tuple[Any, ...]:
        args = original(entry, params)
        assert _same(args, _construct_params_args(entry, params)), entry.sql
        planned[entry.sql] = entry.plan is not None
        return args

    monkeypatch.setattr(shop.storage.compiled_sql.Compiled, "args", checked)
    created = acp.create(cart(address=None)).get_json()
    acp.post(
        f"/checkout_sessions/{created['id']}",
        {"fulfillment_details": {"name": "Jane Doe", "address": ADDRESS_CA}},
    )
    acp.complete(created["id"], "tok_chargeDeclined")
    for _ in range(2):
        acp.complete(created["id"], key="same-key")  # completes, then replays
    other = acp.create().get_json()
    acp.post(f"/checkout_sessions/{other['id']}/cancel", {})
    join_deliveries()
    assert len(planned) >= 10
    assert [sql for sql, has_plan in planned.items() if not has_plan] == []


def _module_statements() -> list[tuple[str, Any]]:
    found = []
    for info in pkgutil.walk_packages(shop.__path__, "shop."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, Executable) and hasattr(value, "compile"):
                found.append((f"{info.name}.{name}", value))
    return found


@pytest.mark.parametrize(("name", "statement"), _module_statements())
def test_a_module_statements_plan_gives_construct_params_own_args(name: str, statement: Any):
    entry = compile_once(statement, _DIALECT)
    if entry is None or entry.plan is None:
        return  # construct_params itself answers
    binds = entry.compiled.bind_names
    every = {bound: object() for bound in binds.values()}
    required = {bound: every[bound] for bind, bound in binds.items() if bind.required}
    extra = {**every, "not_a_parameter": object()}
    for params in (every, required, extra, None if not required else every):
        assert _same(entry.args(params), _construct_params_args(entry, params)), name
    if required:
        missing = dict(every)
        missing.pop(next(iter(required)))
        with pytest.raises(InvalidRequestError):
            entry.args(missing)


_X_OR_A = bindparam("x", value="a")


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        # one name, two binds: one with a value, one required
        (select(_T.c.id).where(_T.c.id == _X_OR_A, _T.c.status == bindparam("x")), {"x": 1}),
        # one name, two values: the last one wins
        (select(_T.c.id).where(_T.c.id == _X_OR_A, _T.c.status == bindparam("x", value="b")), {}),
        # a literal overridden by its name
        (select(_T.c.id).where(_T.c.id == bindparam("x"), _T.c.status == "open"), {"x": 1}),
        (
            select(_T.c.id).where(_T.c.id == bindparam("x"), _T.c.status == "open"),
            {"x": 1, "status_1": "closed"},
        ),
        # not a dict: construct_params itself reads it (a defaultdict would answer every key)
        (
            select(_T.c.id).where(_T.c.id == bindparam("x"), _T.c.status == "open"),
            defaultdict(lambda: "any", {"x": 1}),
        ),
    ],
)
def test_unusual_binds_get_construct_params_own_args(statement: Any, params: Any) -> None:
    entry = compile_once(statement, _DIALECT)
    assert entry is not None
    assert _same(entry.args(params), _construct_params_args(entry, params))


def test_a_required_value_missing_under_a_shared_name_still_raises() -> None:
    entry = compile_once(
        select(_T.c.id).where(_T.c.id == _X_OR_A, _T.c.status == bindparam("x")), _DIALECT
    )
    assert entry is not None
    with pytest.raises(InvalidRequestError):
        entry.args({})
