"""The Idempotency-Key fingerprint of a request body: SHA-256 of its canonical JSON.

The bytes hashed never change between versions (a retry across an upgrade must still match
its key): canonical JSON as RFC 8785 writes it for the JSON our clients send, sorted keys,
no spaces, written by orjson only where orjson writes what the json module writes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

# orjson writes what the json module writes below (keys sorted by code point, the same
# escapes, the same integers) except floats (1e-7 for 1e-07) and NaN or Infinity (null,
# where the json module refuses). In the shape (digits to "0"; ".", "e" and "E" to "."; "n",
# "u" and "l" kept; anything else a space) every float leaves "0." and NaN "null"; text or
# None may too, and any such document is written by the json module, as is one orjson
# refuses (an integer beyond 64 bits, a lone surrogate, a non-str key, a subclass).
_ORJSON_CANONICAL = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_NUMBER_SHAPE = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x2E if byte in b".eE" else byte if byte in b"nul" else 0x20
    for byte in range(256)
)


def canonical_json(value: Any) -> bytes:
    """Serialize like RFC 8785 for the JSON our clients send (sorted keys, no spaces).

    `value` is decoded JSON. The bytes never change (a retry across an upgrade must still
    match its key): orjson writes them only where it writes what the json module writes.
    """
    try:
        text = orjson.dumps(value, option=_ORJSON_CANONICAL)
    except orjson.JSONEncodeError:
        return _canonical_with_json(value)
    shape = text.translate(_NUMBER_SHAPE)
    if b"0." in shape or b"null" in shape:
        return _canonical_with_json(value)
    return text


def _canonical_with_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def request_fingerprint(body: Any) -> str:
    """Return the SHA-256 of the canonical JSON body."""
    return hashlib.sha256(canonical_json(body)).hexdigest()
