"""A database that fails answers 503 with a sentence on every surface, never a bare 500.

Registered by create_app beside shop.errors' handlers: a database error that is about the
database's health (a full disk, a damaged or removed file, a server that does not answer;
shop.storage.health says which) is noted for /healthz and answered 503 `database_unavailable`
with Retry-After; any other database error is a bug and answers like every other bug.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from flask import Flask, request
from sqlalchemy.exc import SQLAlchemyError

from shop.errors import ProcessingError, render_for_path
from shop.storage import health

log = logging.getLogger("shop.errors")


def register(app: Flask) -> None:
    """Answer database failures as 503 with the reason (the most specific handler wins)."""

    def _database_error(exc: Exception) -> Any:
        unavailable = health.failure(exc)
        if unavailable is not None:
            return render_for_path(request.path, unavailable)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return render_for_path(
            request.path,
            ProcessingError(
                "internal_error",
                "Something went wrong on the store's side; the error is logged. "
                "Retrying the same request is safe: nothing is ever charged twice.",
            ),
        )

    app.register_error_handler(SQLAlchemyError, _database_error)
    app.register_error_handler(sqlite3.Error, _database_error)
