"""Unknown keys stop start-up: one sentence with the file, the key, where it is, the nearest key.

`"paymentprovider": "stripe"` would otherwise be ignored and the store would run on the
offline test provider; `"stock": 60` would leave an item unlimited. The sentence names the
line too, found by walking the file's text along the key's path (only on this error path).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shop.config.schema import Shape
from shop.errors import ConfigError

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def nearest(name: str, known: Iterable[str]) -> str | None:
    """Return the known name a typo most likely meant (case first, then spelling), or None."""
    known = list(known)
    for candidate in known:
        if candidate.lower() == name.lower():
            return candidate
    folded = {k.lower().replace("_", ""): k for k in known}
    close = difflib.get_close_matches(name.lower().replace("_", ""), list(folded), 1, 0.6)
    return folded[close[0]] if close else None


def check_known(
    data: Mapping[str, Any],
    shape: Shape,
    path: str,
    trail: Sequence[str | int] = (),
    label: str = "",
) -> None:
    """Raise ConfigError for the first key of `data` that `shape` does not define."""
    if shape.free_keys:
        return
    for key in data:
        if shape.key(key) is None:
            raise unknown_key(key, shape, path, trail, label)


def unknown_key(
    key: str, shape: Shape, path: str, trail: Sequence[str | int], label: str
) -> ConfigError:
    """Return the one-sentence error for an unknown key."""
    place = f"in {label.rstrip(', ')}" if label else "at the top level"
    dotted = _dotted([*trail, key]) if trail else ""
    line = locate_line(path, [*trail, key])
    at = ", ".join(filter(None, (dotted, f"line {line}" if line else "")))
    at = f" ({at})" if at else ""
    guess = shape.meant(key) or nearest(key, shape.names)
    if guess:
        hint = f"did you mean '{guess}'?"
    else:
        hint = f"the keys allowed here are {', '.join(shape.names)}; remove it or fix its name."
    return ConfigError(f"{path}: unknown key '{key}' {place}{at}; {hint}")


def _dotted(trail: Sequence[str | int]) -> str:
    text = ""
    for part in trail:
        if isinstance(part, int):
            text += f"[{part}]" if text else f"#{part + 1}"
        else:
            text += f".{part}" if text else part
    return text


def locate_line(path: str, trail: Sequence[str | int]) -> int | None:
    """Return the line of the key at `trail` in the JSON file at `path`, or None."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        pos = _find(text, _skip(text, 0), list(trail))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return None if pos is None else text.count("\n", 0, pos) + 1


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _find(text: str, pos: int, trail: list[str | int]) -> int | None:
    """Walk from the value at `pos` along `trail`; return the position of the last step."""
    if not trail:
        return pos
    step, rest = trail[0], trail[1:]
    if text[pos] == "{" and isinstance(step, str):
        pos = _skip(text, pos + 1)
        while text[pos] != "}":
            key_at = pos
            key, pos = json.decoder.scanstring(text, pos + 1)
            pos = _skip(text, _skip(text, pos) + 1)  # past ':'
            if key == step:
                return key_at if not rest else _find(text, pos, rest)
            pos = _skip(text, _DECODER.raw_decode(text, pos)[1])
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
        return None
    if text[pos] == "[" and isinstance(step, int):
        pos = _skip(text, pos + 1)
        index = 0
        while text[pos] != "]":
            if index == step:
                return _find(text, pos, rest)
            pos = _skip(text, _DECODER.raw_decode(text, pos)[1])
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
            index += 1
        return None
    return None


def all_unknown(
    data: Any, shape: Shape, path: str, trail: Sequence[str | int] = (), label: str = ""
) -> list[str]:
    """Return a sentence for every unknown key anywhere in `data` (for `check`)."""
    found: list[str] = []
    if not isinstance(data, dict) or shape.free_keys:
        return found
    for key, value in data.items():
        spec = shape.key(key)
        if spec is None:
            found.append(str(unknown_key(key, shape, path, trail, label)))
            continue
        if spec.shape is None:
            continue
        if isinstance(value, list) and spec.type.startswith("list"):
            for i, entry in enumerate(value):
                name = entry.get("id") or entry.get("code") if isinstance(entry, dict) else None
                inner = f"{spec.shape.title.removeprefix('a ')} '{name}'" if name else ""
                if label and inner:
                    inner = f"{label.rstrip(', ')}, {inner}"
                found += all_unknown(entry, spec.shape, path, (*trail, key, i), inner)
        else:
            found += all_unknown(value, spec.shape, path, (*trail, key), label or key)
    return found
