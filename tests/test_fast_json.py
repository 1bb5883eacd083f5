"""shop.fast_json: orjson where it is safe, and the json module wherever orjson would differ."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shop import fast_json
from shop.checkout.model import Status

DOCUMENT = {
    "id": "cs_1",
    "status": Status.READY,
    "line_items": [{"name": "Café crème ☕", "quantity": 2, "unit_amount": 2999}],
    "buyer": {"first_name": "Zoë", "last_name": "Ōkubo 大久保"},
    "percent_off": 12.5,
    "order": None,
    "ok": True,
}


def test_writes_compact_utf8_like_the_json_module_without_ascii_escapes():
    expected = json.dumps(DOCUMENT, separators=(",", ":"), ensure_ascii=False)
    assert fast_json.dumps(DOCUMENT) == expected
    assert fast_json.dumps_bytes(DOCUMENT) == expected.encode("utf-8")
    assert "Zoë".encode() in fast_json.dumps_bytes(DOCUMENT)


@pytest.mark.parametrize("source", [str, lambda text: text.encode("utf-8")])
def test_round_trip(source):
    assert fast_json.loads(source(fast_json.dumps(DOCUMENT))) == json.loads(json.dumps(DOCUMENT))


@pytest.mark.parametrize(
    "amount", [0.01, 0.1, 0.3, 12.5, 29.99, 1234567.89, 99999999.99, 123456789012.34]
)
def test_money_floats_print_as_the_json_module_prints_them(amount):
    """Forter amounts are floats chosen to print exactly as their Decimal (29.99)."""
    assert fast_json.dumps(amount) == json.dumps(amount)


@pytest.mark.parametrize(
    "number",
    [
        2**63 - 1,
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        10**30,
        -(10**40),
        int("9" * 300),
    ],
)
def test_integers_of_any_size_keep_their_exact_value(number):
    document = {"phone_number": number, "nested": [number]}
    text = fast_json.dumps(document)
    assert text == json.dumps(document, separators=(",", ":"))
    assert fast_json.loads(text) == document
    assert fast_json.loads(text.encode()) == document
    assert type(fast_json.loads(text)["phone_number"]) is int


def test_long_digit_runs_in_text_still_read_exactly():
    document = {"reference": "1234567890123456789012", "n": 123456789012345678901234567890}
    assert fast_json.loads(json.dumps(document)) == document


def test_lone_surrogates_are_written_as_ascii_escapes_and_read_back():
    document = {"note": "a\ud800b", "\udfff": 1}
    text = fast_json.dumps(document)
    assert text == json.dumps(document, separators=(",", ":"))
    assert text.isascii()
    assert fast_json.loads(text) == document
    assert fast_json.loads(text.encode()) == document
    assert fast_json.loads('["a\ud800b"]') == ["a\ud800b"]  # a raw lone surrogate in str


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_written_as_null(value):
    """Decided: valid JSON `null`, never the json module's non-JSON `NaN` / `Infinity`."""
    assert fast_json.dumps({"x": value}) == '{"x":null}'


def test_nan_tokens_written_by_the_json_module_are_still_read():
    document = fast_json.loads('{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e999}')
    assert math.isnan(document["a"])
    assert document["b"] == document["d"] == math.inf
    assert document["c"] == -math.inf


def test_text_the_json_module_wrote_with_spaces_and_escapes_is_read():
    stored = json.dumps(DOCUMENT)  # how shop stored columns before fast_json
    assert "\\u00eb" in stored
    assert fast_json.loads(stored) == fast_json.loads(fast_json.dumps(DOCUMENT))


@dataclass
class _Record:
    x: int


@pytest.mark.parametrize(
    "value", [Decimal("1.5"), datetime(2026, 4, 17, tzinfo=UTC), _Record(1), object()]
)
def test_values_the_json_module_refuses_are_refused(value):
    with pytest.raises(TypeError):
        fast_json.dumps({"v": value})


def test_non_string_keys_are_written_as_the_json_module_writes_them():
    assert fast_json.dumps({1: "a", 2.5: "b", None: "c"}) == json.dumps(
        {1: "a", 2.5: "b", None: "c"}, separators=(",", ":")
    )


def test_cycles_raise_value_error():
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        fast_json.dumps(cycle)


def test_deep_nesting_beyond_orjson_limit_is_written():
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    assert fast_json.loads(fast_json.dumps(deep)) == deep


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{'a': 1}", b"{"])
def test_invalid_text_raises_json_decode_error(text):
    with pytest.raises(json.JSONDecodeError):
        fast_json.loads(text)


def test_bytes_that_are_not_utf8_raise_value_error_like_the_json_module():
    with pytest.raises(ValueError):
        fast_json.loads(b'{"a": "\xff"}')
