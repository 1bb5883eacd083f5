"""Operations endpoints: health check and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import text

from shop import metrics, transaction
from shop.api.acp import json_response

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    transaction.execute(text("SELECT 1"))
    return json_response({"status": "ok"})


@bp.get("/metrics")
def metrics_text() -> Response:
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")
