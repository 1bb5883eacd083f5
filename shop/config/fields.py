"""Typed reading of one JSON object from a merchant's file: every wrong value is one sentence.

`Fields(data, "config.json")` wraps a parsed object; each getter checks the type of one field
and raises ConfigError naming the file, the dotted field path and what to write instead, so
no wrong type can reach the rest of the code as a traceback (`"acp": []`, `"bearer": "false"`,
`"orderWebhookUrl": 5`). Absent and `null` fields take the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from shop.config.schema import Shape
from shop.config.strict import check_known
from shop.errors import ConfigError

# A getter called without a default takes the key's default from the schema.
SCHEMA_DEFAULT: Any = object()


def _kind(value: Any) -> str:
    """Name a JSON value's type the way a merchant reads it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a true/false value)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


class Fields:
    """One JSON object of a merchant's file, read field by field with typed getters."""

    __slots__ = ("_data", "label", "path", "prefix", "shape", "trail")

    def __init__(
        self,
        data: Mapping[str, Any],
        path: str,
        prefix: str = "",
        label: str = "",
        shape: Shape | None = None,
        trail: Sequence[str | int] = (),
    ) -> None:
        self._data = data
        self.path = path
        self.prefix = prefix  # dotted path of this object: "tax.nexus."
        self.label = label  # names a list entry: "shipping option 'express', "
        self.shape = shape  # the keys this object may have (shop/config/schema.py)
        self.trail = tuple(trail)  # keys and indexes from the file's top to this object
        if shape is not None:
            check_known(data, shape, path, self.trail, label)

    def _default(self, key: str, default: Any) -> Any:
        if self.shape is None or self.shape.free_keys:
            return None if default is SCHEMA_DEFAULT else default
        spec = self.shape.key(key)
        if spec is None:  # a programming error: read only keys the schema defines
            raise KeyError(f"{self.shape.title} has no key {key!r} in shop/config/schema.py")
        return spec.default if default is SCHEMA_DEFAULT else default

    def entry(self, key: str, index: int, label: str) -> Fields:
        """Return entry `index` of the list `key` as Fields (the caller checked it is an object)."""
        spec = self.shape.key(key) if self.shape else None
        return Fields(
            self._data[key][index],
            self.path,
            label=label,
            shape=spec.shape if spec else None,
            trail=(*self.trail, key, index),
        )

    def where(self, key: str) -> str:
        """Return "<file>: field '<dotted.path>'" for a field of this object."""
        return f"{self.path}: {self.label}field '{self.prefix}{key}'"

    def error(self, key: str, message: str) -> ConfigError:
        """Return a ConfigError about one field: "<file>: field '<key>' <message>"."""
        return ConfigError(f"{self.where(key)} {message}")

    def raw(self, key: str, default: Any = SCHEMA_DEFAULT) -> Any:
        """Return a field's value unchecked (None and absent give the default)."""
        default = self._default(key, default)
        value = self._data.get(key)
        return default if value is None else value

    def _wrong(self, key: str, wanted: str) -> ConfigError:
        return self.error(key, f"must be {wanted}, got {_kind(self._data.get(key))}.")

    def obj(self, key: str) -> Fields:
        """Return a nested object as Fields (empty when absent or null)."""
        value = self.raw(key, {})
        if not isinstance(value, dict):
            raise self._wrong(key, 'an object like {"…": …}')
        spec = self.shape.key(key) if self.shape else None
        return Fields(
            value,
            self.path,
            f"{self.prefix}{key}.",
            self.label,
            shape=spec.shape if spec else None,
            trail=(*self.trail, key),
        )

    def mapping(self) -> dict[str, Any]:
        """Return this object's data as a plain dict."""
        return dict(self._data)

    def text(
        self,
        key: str,
        default: Any = SCHEMA_DEFAULT,
        *,
        example: str = "",
        allow_empty: bool = False,
    ) -> str | None:
        """Return a non-empty text field, or the default when absent or null."""
        default = self._default(key, default)
        value = self._data.get(key)
        if value is None:
            return default
        if isinstance(value, str) and allow_empty and not value.strip():
            return default
        if not isinstance(value, str) or not value.strip():
            hint = f' such as "{example}"' if example else ""
            raise self._wrong(key, f"a non-empty text value in double quotes{hint}")
        return value

    def boolean(self, key: str, default: Any = SCHEMA_DEFAULT) -> bool:
        """Return a true/false field; text such as "false" is refused (it would read as true)."""
        default = self._default(key, default)
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false without quotes")
        return value

    def integer(
        self,
        key: str,
        default: Any = SCHEMA_DEFAULT,
        *,
        minimum: int = 0,
        maximum: int | None = None,
        unit: str = "",
    ) -> int | None:
        """Return a whole-number field within [minimum, maximum], or the default."""
        default = self._default(key, default)
        value = self._data.get(key)
        if value is None:
            return default
        span = f"from {minimum} to {maximum}" if maximum is not None else f"≥ {minimum}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise self._wrong(key, f"a whole number {span}{unit}")
        return value

    def text_list(self, key: str, *, example: str = '["…"]') -> tuple[str, ...]:
        """Return a list of non-empty texts (empty when absent or null)."""
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self._wrong(key, f"a list of text values like {example}")
        return tuple(value)

    def items(self, key: str) -> list[Any]:
        """Return a list field (empty when absent or null); the caller checks its entries."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self._wrong(key, "a list [ … ]")
        return value

    def url(
        self, key: str, default: Any = SCHEMA_DEFAULT, *, base: str | None = None
    ) -> str | None:
        """Return an http(s) URL; with `base`, a path such as "/terms" is resolved against it."""
        value = self.text(key, default, example="https://example.com/…")
        if value is None:
            return None
        resolved = urljoin(base.rstrip("/") + "/", value.strip()) if base else value.strip()
        parts = urlsplit(resolved)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            relative = ' or a path on storeUrl such as "/terms"' if base else ""
            raise self.error(key, f"must be an http:// or https:// URL{relative}, got {value!r}.")
        return resolved


def env_seconds(
    env: Mapping[str, str], name: str, default: float, low: float, high: float, meaning: str
) -> float:
    """Read a duration in seconds from the environment: unset is `default`, else low..high."""
    raw = env.get(name) or ""
    if not raw:
        return float(default)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")  # fails the range check below
    if not low <= seconds <= high:
        raise ConfigError(
            f"{name} is {raw!r}; set it to {meaning} (in seconds, {low:g} to {high:g}, "
            f"default {default:g}), or unset it."
        )
    return seconds
