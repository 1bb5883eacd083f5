"""docs/configuration.md, rendered from shop/config/schema.py (the one definition of the keys).

Regenerate after changing a key:  python -m shop.config.reference > docs/configuration.md
(tests/test_config_reference.py fails while the file and the definitions disagree).
"""

from __future__ import annotations

import json
from typing import Any

from shop.config.schema import CONFIG, ENVIRONMENT, PRODUCT, Key, Shape

_INTRO = """\
# Configuration reference

Generated from `shop/config/schema.py` by `python -m shop.config.reference`; do not edit by
hand. Every key is checked at start-up and by `flask --app app check`: a key that is not
listed here stops the store with one sentence naming the file, the key, its line and the
nearest known key (`"paymentprovider"` -> did you mean `paymentProvider`?). Absent and
`null` keys take the default. The store reads `config.json` and `products.json` from the
directory it starts in, or from the paths in `SHOP_CONFIG` and `SHOP_PRODUCTS`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _example(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`" if value is not None else ""


def _rows(shape: Shape, prefix: str) -> list[str]:
    rows: list[str] = []
    for key in shape.keys:
        rows.append(_row(key, prefix))
    for key in shape.keys:
        if key.shape is not None and not key.shape.free_keys:
            marker = "[]." if key.type.startswith("list") else "."
            inner = f"{prefix}{key.name}{marker}"
            rows.extend(_rows(key.shape, inner))
    return rows


def _row(key: Key, prefix: str) -> str:
    doc = key.doc
    return (
        f"| `{prefix}{key.name}` | {_cell(key.type)} | {_cell(key.default_text)} | "
        f"{_cell(_example(key.example))} | {_cell(doc)} |"
    )


_HEADER = ["| key | type | default | example | what it changes |", "|---|---|---|---|---|"]


def render() -> str:
    """Return docs/configuration.md."""
    lines = [_INTRO, "## config.json", "", *_HEADER, *_rows(CONFIG, ""), ""]
    lines += [
        "## products.json",
        "",
        'A list of products (or `{"products": [...]}`). A product with `variants` is sold by '
        "variant id; without, by product id. Ids are unique across products and variants.",
        "",
        *_HEADER,
        *_rows(PRODUCT, ""),
        "",
        "## Environment",
        "",
        "Secrets live only here, never in the JSON files. Under systemd they come from "
        "`/etc/shop/env` (see docs/deploy.md); give commands the same file with "
        "`flask --env-file /etc/shop/env --app app …`.",
        "",
        "| variable | needed for | what it is |",
        "|---|---|---|",
    ]
    lines += [f"| `{v.name}` | {_cell(v.needed)} | {_cell(v.doc)} |" for v in ENVIRONMENT]
    return "\n".join(lines) + "\n"


def all_key_paths() -> list[str]:
    """Return every documented key as a dotted path (lists marked with [])."""
    return [row.split("`")[1] for row in _rows(CONFIG, "") + _rows(PRODUCT, "")]


if __name__ == "__main__":
    print(render(), end="")
