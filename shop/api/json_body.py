"""Strict JSON request bodies: the one decoder every surface uses, so no body can cause a 500.

Python's json module accepts more than JSON: NaN, Infinity and -Infinity, numbers that
overflow to infinity (1e999), lone UTF-16 surrogates ("\\ud800"), integers of any length up
to a ValueError, and nesting until a RecursionError. None of those can be hashed as RFC 8785
canonical JSON (the idempotency fingerprint) or stored and rendered safely, so each is
refused here with a sentence that names the problem. Surfaces wrap BodyError in their own
error shape.

orjson reads a body several times faster and refuses each of those itself except deep
nesting (it allows 1024 levels), so a body orjson reads is checked for depth alone. A body
orjson refuses goes to the json module, which names the problem as before (or reads it: a
later duplicate key may replace the bad value); so does a body with a run of 19 digits,
since orjson reads an integer beyond 64 bits as a float. Where orjson reads a body, the
value is the json module's, types and key order included (tests/test_json_body.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

MAX_DEPTH = 32

_TOO_DEEP = (
    "The request body is nested too deeply; JSON objects and arrays may nest at most "
    f"{MAX_DEPTH} levels here."
)
# Every ASCII digit to "0", "[" and "{" to "[", every other byte to a space: 19 zeros in a row
# mark a number orjson may not hold exactly, and fewer than MAX_DEPTH + 1 brackets cannot
# nest too deeply (one pass over the body; a regular expression scan costs more).
_SHAPE = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"[{" else 0x20 for byte in range(256)
)
_LONG_RUN = b"0" * 19


class BodyError(ValueError):
    """The request body is not acceptable JSON; the message says what to change."""


def _no_constant(name: str) -> Any:
    raise BodyError(
        f"The request body contains {name}, which is not JSON; send numbers as "
        "finite decimal values (or null)."
    )


def loads(raw: bytes | str, *, parse_float: Callable[[str], Any] = float) -> Any:
    """Decode one JSON value strictly (UTF-8, finite numbers, valid Unicode, bounded depth)."""
    if parse_float is float and isinstance(raw, bytes):
        shape = raw.translate(_SHAPE)
        if _LONG_RUN not in shape:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass  # the json module says why (or reads it, as it always did)
            else:
                if shape.count(b"[") > MAX_DEPTH:
                    _check_depth(value)
                return value
    return _loads_with_json(raw, parse_float)


def _loads_with_json(raw: bytes | str, parse_float: Callable[[str], Any]) -> Any:
    """Decode with the json module and check every value: the reference for what is refused."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BodyError("The request body is not UTF-8 text; send UTF-8 JSON.") from None
    try:
        value = json.loads(text, parse_float=parse_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"The request body is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg})."
        ) from None
    except RecursionError:
        raise BodyError(_TOO_DEEP) from None
    except BodyError:
        raise
    except ValueError:  # an integer literal longer than Python reads (4300 digits)
        raise BodyError(
            "The request body holds a number with too many digits; send "
            "amounts and quantities as ordinary integers."
        ) from None
    _check(value)
    return value


def _check_depth(value: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH, looking at containers only."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise BodyError(_TOO_DEEP)


def _check(value: Any) -> None:
    """Refuse non-finite floats, lone surrogates and deep nesting, without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BodyError(
                    "The request body holds a number too large to represent "
                    "(it overflows to infinity); send a finite value."
                )
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BodyError(_TOO_DEEP)
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(
            "The request body contains a lone UTF-16 surrogate escape (like "
            "\\ud800) that is not a character; send valid Unicode text."
        ) from None
