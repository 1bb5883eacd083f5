"""The gunicorn entry point: `gunicorn app:app` (or `flask --app app run`)."""

import sys

from shop import create_app
from shop.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # A merchant's mistake gets one sentence, not a traceback.
    print(f"shop cannot start: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
