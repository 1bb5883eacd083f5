"""The gunicorn entry point: `gunicorn app:app` (or `flask --app app run`)."""

import sys

from shop import create_app
from shop.cli.check import check_app, is_check_command
from shop.config.startup import fail_start
from shop.errors import ConfigError

if is_check_command(sys.argv):
    # `flask --app app check` reads the files itself: it must work when they are broken,
    # and must not open the store (seed stock, create tables) just to look.
    app = check_app()
else:
    try:
        app = create_app()
    except ConfigError as exc:
        # A merchant's mistake gets one sentence, not a traceback, and stops gunicorn for good.
        fail_start(str(exc))
