"""The gunicorn entry point: `gunicorn app:app` (or `flask --app app run`)."""

from shop import create_app
from shop.config.startup import fail_start
from shop.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # A merchant's mistake gets one sentence, not a traceback, and stops gunicorn for good.
    fail_start(str(exc))
