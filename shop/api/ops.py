"""Operations endpoints: health check and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import text

from shop import metrics
from shop.api.acp import json_response
from shop.storage import health, read

bp = Blueprint("ops", __name__)
_PING = text("SELECT 1")


@bp.get("/healthz")
def healthz() -> Response:
    problems = health.problems()  # the file, its disk, failures met, a quick check
    if problems:
        return json_response({"status": "degraded", "problems": problems}, 503)
    read(_PING)  # a WAL reader: answers even while a writer holds the lock
    return json_response({"status": "ok"})


@bp.get("/metrics")
def metrics_text() -> Response:
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")
