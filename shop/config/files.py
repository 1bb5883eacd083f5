"""Both files and the environment, read and checked together: what start-up and `check` use.

`python -m shop.config.files` checks them without starting anything: it prints nothing and
exits 0 when the store would start, else prints the one sentence and exits 1. gunicorn's
master runs it before a reload (gunicorn.conf.py), in a child process, so the master never
imports the store's code and new workers still load new code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from shop.config.catalog import Catalog, load_catalog
from shop.config.settings import Settings, load_settings
from shop.errors import ConfigError


def load_files(
    env: Mapping[str, str], config_overrides: Mapping[str, Any] | None = None
) -> tuple[Settings, Catalog]:
    """Read config.json, products.json and the environment; raise ConfigError on a mistake."""
    settings = load_settings(env, config_overrides)
    catalog = load_catalog(settings.products_path)
    check_together(settings, catalog)
    return settings, catalog


def check_together(settings: Settings, catalog: Catalog) -> None:
    """Raise ConfigError for settings that contradict the catalog or each other."""
    if any(not p.digital for p in catalog.products) and not settings.shipping:
        raise ConfigError(
            f"{settings.config_path}: field 'shipping' is empty but {settings.products_path} has "
            "physical products; add at least one option like "
            '{"id": "standard", "title": "Standard", "amount": 500, "minDays": 3, "maxDays": 5}.'
        )
    if bool(settings.secret("ACP_WEBHOOK_URL")) != bool(settings.secret("ACP_WEBHOOK_SECRET")):
        raise ConfigError(
            "ACP_WEBHOOK_URL and ACP_WEBHOOK_SECRET go together: set both to send "
            "order events to the agent platform, or neither."
        )


def main() -> int:
    """Check the files named by the environment; print the sentence and return 1 if wrong."""
    try:
        load_files(os.environ)
    except ConfigError as exc:
        print(exc, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
