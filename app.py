"""The gunicorn entry point: `gunicorn app:app` (or `flask --app app run`)."""

from shop import create_app
from shop.errors import ConfigError
from shop.startup import fail_start

try:
    app = create_app()
except ConfigError as exc:
    # A merchant's mistake gets one sentence, not a traceback, and stops gunicorn for good.
    fail_start(str(exc))
