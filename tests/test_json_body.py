"""shop.json_body: the orjson reading and the json module's reading agree on every body.

`loads` reads a body with orjson when it can; `_loads_with_json` is the json module plus the
check of every value, the reference. For each body both must return the same value (same
types, same key order, -0.0 as -0.0) or raise BodyError with the same sentence.
"""

from __future__ import annotations

import json
import math
import random
import struct
from decimal import Decimal, localcontext
from typing import Any

import pytest

from shop.api import json_body
from shop.api.json_body import MAX_DEPTH, BodyError


def _typed(value: Any) -> Any:
    """`value` with every type and order spelled out (1 != 1.0, 0.0 != -0.0, key order counts)."""
    if isinstance(value, dict):
        return ("dict", [(key, _typed(child)) for key, child in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(child) for child in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def _outcome(decode: Any, raw: bytes) -> Any:
    try:
        return ("value", _typed(decode(raw)))
    except BodyError as exc:
        return ("refused", str(exc))


def _assert_same(raw: bytes) -> None:
    expected = _outcome(lambda body: json_body._loads_with_json(body, float), raw)
    assert _outcome(json_body.loads, raw) == expected, raw[:200]


def _nest(depth: int, inner: str = "1") -> str:
    text = inner
    for level in range(depth):
        text = f'{{"k{level}": {text}}}' if level % 3 == 0 else f"[{text}]"
    return text


TRICKY = [
    # numbers
    b"1e999",
    b"-1e999",
    b"1E400",
    b"1e0400",
    b"1e-400",
    b"-1e-400",
    b"-0",
    b"-0.0",
    b"0e0",
    b"1E+2",
    b"1.7976931348623157e308",
    b"1.7976931348623158e308",
    b"1.7976931348623159e308",
    b"4.9e-324",
    b"2.4703282292062327e-324",
    b"2.4703282292062328e-324",
    b"2.2250738585072011e-308",
    b"123456789012345678.123456789012345678e-10",
    b"9007199254740993",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"123456789012345678",
    b"-123456789012345678",
    b"1" * 30,
    b"9" * 5000,
    b"1" + b"0" * 18 + b".5",
    b"0.0000000000000000001",
    b'{"reference": "1234567890123456789012", "n": 1}',
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"[NaN]",
    b"nan",
    b"-nan",
    b"infinity",
    b"01",
    b"-01",
    b"1.",
    b".5",
    b"+1",
    b"-",
    b"1e",
    b"1e+",
    b"0x10",
    # strings and escapes
    b'"\\ud800"',
    b'"\\udc00"',
    b'"\\ud800\\u0041"',
    b'"\\ude00\\ud83d"',
    b'"\\ud800\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\uD83D\\uDE00"',
    b'{"\\udfff": 1}',
    b'{"a": "\\ud800", "a": 1}',
    b'{"a": 1, "a": "\\ud800"}',
    b'{"a": 1e999, "a": 1}',
    b'{"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "a": 1}',
    b'"\\u0000"',
    b'"\\/"',
    b'"\\x"',
    b'"\\U0041"',
    b'"\\u004"',
    b'"\\u00"',
    b'"a\tb"',
    b'"a\nb"',
    b'"\x01"',
    b'"\x1f"',
    b'"\x7f"',
    b"'a'",
    # bytes that are not UTF-8, or UTF-8 Python refuses
    b"\xff",
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"\xed\xbf\xbf"',
    b'"\xc0\xaf"',
    b'"\xe0\x80\xaf"',
    b'"\xf4\x90\x80\x80"',
    b'"\xf8\x88\x80\x80\x80"',
    b'"\xef\xbf\xbe"',
    b'"\xef\xbf\xbf"',
    b'"\xf0\x9f\x98\x80"',
    b'"\xc3"',
    b"\xef\xbb\xbf{}",
    b"\xfe\xff\x00{\x00}",
    b"\x00{\x00}\x00",
    # whitespace, structure, literals
    b"",
    b" ",
    b"\t\n\r 1 \t\n\r",
    b"\x0c{}",
    b"{}\x0c",
    b"\x0b1",
    b"\xc2\xa01",
    b"\xe2\x80\xa81",
    b"{} x",
    b"{}\x00",
    b"[1]]",
    b'{"a":1}}',
    b"[1,]",
    b'{"a":1,}',
    b"[,1]",
    b"[1 2]",
    b'{"a" 1}',
    b"{1:2}",
    b"/*c*/1",
    b"1 //c",
    b"True",
    b"nul",
    b"true",
    b"null",
    b'{"a":1,"b":2,"a":3}',
    b'"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',
    b'{"x": "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{", "y": [[1]]}',
    # depth around MAX_DEPTH and around orjson's and Python's own limits
    *[_nest(depth).encode() for depth in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 40)],
    *[b"[" * depth + b"]" * depth for depth in (MAX_DEPTH, MAX_DEPTH + 1, 990, 1024, 1025)],
    b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    b"[" * 50_000,
    b"[" * 100_000 + b"]" * 100_000,
]


@pytest.mark.parametrize("raw", TRICKY, ids=range(len(TRICKY)))
def test_tricky_bodies_read_as_the_json_module_reads_them(raw):
    _assert_same(raw)


def test_depth_is_refused_with_the_same_sentence_at_every_depth():
    for depth in range(MAX_DEPTH - 3, MAX_DEPTH + 4):
        arrays = b"[" * (depth - 1) + b"]" * (depth - 1)
        for raw in (
            b"[" * depth + b"]" * depth,
            _nest(depth, '"x"').encode(),
            _nest(depth, '"[[[[[["').encode(),  # brackets in text: counted, then walked
            b'{"pad": [[], [], [{}]], "deep": ' + arrays + b"}",
        ):
            _assert_same(raw)
    with pytest.raises(BodyError, match="nested too deeply"):
        json_body.loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert json_body.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    deepest = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert json_body.loads(b'{"pad": [[]], "deep": ' + deepest + b"}")["pad"] == [[]]


def _random_text(rnd: random.Random) -> str:
    pools = (
        "abcxyz 0123456789.-e+E",
        '"\\/\b\f\n\r\t\x00\x01\x1f\x7f',
        "éßçøÅ€ĀŻ",
        "中文日本語한국어",
        "\u2028\u2029\ufeff\ufffe\uffff\u00a0",
        "\U0001f600\U0001f4a5\U00010000\U0010ffff",
        "[]{}:,",
    )
    return "".join(rnd.choice(rnd.choice(pools)) for _ in range(rnd.randint(0, 12)))


def _random_number(rnd: random.Random) -> int | float:
    kind = rnd.randrange(6)
    if kind == 0:
        return rnd.randint(-1000, 1000)
    if kind == 1:
        return rnd.choice((2**63, 2**64)) + rnd.randint(-3, 3) * rnd.choice((1, -1))
    if kind == 2:
        return rnd.randint(-(10**30), 10**30)
    if kind == 3:
        return rnd.choice((0.0, -0.0, 0.1, 1e16, 1e-7, 1e22, 5e-324, 1.7976931348623157e308))
    bits = rnd.getrandbits(64)
    number = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return number if math.isfinite(number) else 1.5


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(7 if depth < 6 else 4)
    if kind == 0:
        return _random_text(rnd)
    if kind == 1:
        return _random_number(rnd)
    if kind == 2:
        return rnd.choice((True, False, None))
    if kind == 3:
        return rnd.randint(0, 99)
    if kind == 4:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {_random_text(rnd): _random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}


MUTATIONS = [
    b"\\",
    b'"',
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d",
    b"\\u",
    b"NaN",
    b"Infinity",
    b"-",
    b"1e999",
    b"e",
    b".",
    b"0",
    b"9" * 19,
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b":",
    b"\x00",
    b"\x1f",
    b"\xff",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\xc3",
    b" ",
    b"\t",
    b"\x0c",
    b"\xc2\xa0",
    b"null",
    b"tru",
    b"[" * 40,
]


def _mutate(rnd: random.Random, raw: bytes) -> bytes:
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randint(0, len(raw))
        action = rnd.randrange(3)
        if action == 0:
            raw = raw[:at] + rnd.choice(MUTATIONS) + raw[at:]
        elif action == 1:
            raw = raw[:at] + raw[at + rnd.randint(1, 3) :]
        else:
            raw = raw[:at] + rnd.choice(MUTATIONS) + raw[at + 1 :]
    return raw


def test_random_and_mutated_bodies_read_as_the_json_module_reads_them():
    rnd = random.Random(20260417)
    for _ in range(4000):
        value = _random_value(rnd)
        raw = json.dumps(
            value, ensure_ascii=rnd.random() < 0.5, indent=rnd.choice((None, 1))
        ).encode("utf-8", "surrogatepass")
        _assert_same(raw)
        for _ in range(3):
            _assert_same(_mutate(rnd, raw))


def test_floats_read_to_the_same_double():
    rnd = random.Random(7)
    texts = []
    for _ in range(3000):
        number = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
        if not math.isfinite(number) or number == 0:
            continue
        texts.append(repr(number))
        # Halfway between two doubles (and just off it), at up to 18 digits a run: the
        # hardest texts to round that reach orjson (longer runs go to the json module).
        above = math.nextafter(number, math.inf)
        if math.isfinite(above):
            with localcontext() as context:
                context.prec = 60
                middle = (Decimal(number) + Decimal(above)) / 2
                for digits in (16, 17, 18):
                    texts.append(format(middle, f".{digits}e"))
                    texts.append(format(middle.next_plus(), f".{digits}e"))
        integer = rnd.randint(1, 10**18 - 1)
        texts.append(f"{integer}.{rnd.randint(0, 10**18 - 1):018d}e{rnd.randint(-340, 320)}")
    for text in texts:
        _assert_same(text.encode())
        _assert_same(f'{{"amount": [{text}]}}'.encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"currency": "usd", "line_items": [{"id": "widget", "quantity": 1}], '
        b'"buyer": {"email": "bench@example.com", "first_name": "Zo\xc3\xab"}}',
        b'{"payment_data": {"handler_id": "card_tokenized", "instrument": {"type": "card", '
        b'"credential": {"type": "spt", "token": "tok_visa"}}}, "note": null, "n": 12.5}',
    ],
)
def test_ordinary_bodies_are_read_by_orjson_alone(raw, monkeypatch):
    """The fast path is the point: an ordinary body never reaches the json module."""
    expected = json.loads(raw)

    def refuse(*args: Any) -> Any:
        raise AssertionError("read by the json module")

    monkeypatch.setattr(json_body, "_loads_with_json", refuse)
    assert json_body.loads(raw) == expected


def test_text_and_other_number_types_use_the_json_module():
    assert json_body.loads('{"a": "\\u00e9"}') == {"a": "é"}
    assert json_body.loads(b'{"amount": 29.99}', parse_float=Decimal) == {
        "amount": Decimal("29.99")
    }
    with pytest.raises(BodyError, match="not JSON"):
        json_body.loads(b'{"amount": NaN}', parse_float=Decimal)
