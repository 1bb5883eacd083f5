"""Fast JSON for the app's own documents: responses, stored columns and reading them back.

orjson writes and reads JSON several times faster than the json module, and every checkout
request does both a few times. Output is compact UTF-8 (no spaces, non-ASCII as is, which
`application/json` means: RFC 8259 §8.1). Text whose exact bytes carry meaning keeps the json
module, or uses orjson only where it gives the json module's answer: the idempotency
fingerprint (shop.api.fingerprint), the strict request decoder (shop.api.json_body), signatures over
what a client or provider sent, output for humans.

Where orjson would differ from the json module, no value changes:
- Integers beyond 64 bits: orjson refuses to write them and reads them as floats, so
  `dumps` falls back to the json module and `loads` reads any text with a run of 19 digits
  (every integer orjson cannot hold has one) with the json module.
- Anything else orjson cannot write (a lone surrogate, a non-str key, Decimal, a dataclass,
  a datetime, a cycle) goes to the json module, which writes it as ASCII or raises as before.
- Text orjson cannot read (NaN or Infinity tokens, a lone surrogate escape) goes to the json
  module, which reads it or raises json.JSONDecodeError as before.
- NaN and ±Infinity are written as `null`, valid JSON, where the json module wrote the
  non-JSON tokens `NaN`/`Infinity`. None can arise: requests are decoded strictly, config
  numbers are range-checked and money is integers; and finding them first would take a walk
  over every document that costs more than orjson saves.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Dataclasses and datetimes go to the fallback too, which refuses them like the json module.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
# Every ASCII digit to "0", every other byte to a space: 19 zeros in a row then mark a number
# orjson may not hold exactly (a regular expression scan costs more than the parse).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def dumps_bytes(value: Any) -> bytes:
    """Serialize `value` as compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """Serialize `value` as compact JSON text (for a TEXT column)."""
    return dumps_bytes(value).decode()


def loads(data: str | bytes) -> Any:
    """Parse JSON text or UTF-8 bytes; raise ValueError (json.JSONDecodeError) when invalid."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if _LONG_RUN not in raw.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(raw)  # a lone surrogate passed through fails here
        except orjson.JSONDecodeError:
            pass  # the json module reads what orjson refuses, or raises its own error
    return json.loads(data)
