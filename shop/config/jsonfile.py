"""Reading the merchant's JSON files with errors that point at the line and column."""

from __future__ import annotations

import json
import os
from typing import Any

from shop.errors import ConfigError


def load_json_file(path: str, label: str, variable: str) -> Any:
    """Parse a JSON file; raise ConfigError naming the file, line and column on any problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        where = os.path.abspath(path)
        how = (
            f"{variable} is not set, so {label} is read from the current directory {os.getcwd()}"
            if path == label
            else f"{variable} is {path!r}"
        )
        raise ConfigError(
            f"{path}: file not found ({where}); {how}. Run from the store's directory, or set "
            f"{variable} to your {label}'s full path (e.g. {variable}=/etc/shop/{label})."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; save it as UTF-8.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg} "
            "(look for a missing comma or quote, or a trailing comma, just before that spot)."
        ) from None
