"""Strict JSON request bodies: the one decoder every surface uses, so no body can cause a 500.

Python's json module accepts more than JSON: NaN, Infinity and -Infinity, numbers that
overflow to infinity (1e999), lone UTF-16 surrogates ("\\ud800"), integers of any length up
to a ValueError, and nesting until a RecursionError. None of those can be hashed as RFC 8785
canonical JSON (the idempotency fingerprint) or stored and rendered safely, so each is
refused here with a sentence that names the problem. Surfaces wrap BodyError in their own
error shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 32


class BodyError(ValueError):
    """The request body is not acceptable JSON; the message says what to change."""


def _no_constant(name: str) -> Any:
    raise BodyError(
        f"The request body contains {name}, which is not JSON; send numbers as "
        "finite decimal values (or null)."
    )


def loads(raw: bytes | str, *, parse_float: Callable[[str], Any] = float) -> Any:
    """Decode one JSON value strictly (UTF-8, finite numbers, valid Unicode, bounded depth)."""
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
        raise BodyError(
            f"The request body is nested too deeply; JSON objects and arrays may "
            f"nest at most {MAX_DEPTH} levels here."
        ) from None
    except BodyError:
        raise
    except ValueError:  # an integer literal longer than Python reads (4300 digits)
        raise BodyError(
            "The request body holds a number with too many digits; send "
            "amounts and quantities as ordinary integers."
        ) from None
    _check(value)
    return value


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
                raise BodyError(
                    f"The request body is nested too deeply; JSON objects and "
                    f"arrays may nest at most {MAX_DEPTH} levels here."
                )
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
