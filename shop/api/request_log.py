"""Per-request latency for /metrics, and logs a merchant can search (SHOP_LOG_FORMAT=json).

Every request is timed into shop_http_request_duration_seconds by Flask endpoint, method and
status class. With SHOP_LOG_FORMAT=json every `shop` log record becomes one JSON line on
stderr: one per request (`request_id`, `method`, `path`, `status`, `duration_ms`,
`session_id` when known) and one per business event (`event`: session_completed,
payment_failed, order_delivered, order_delivery_failed; see shop.metrics.event).

What a line never holds: headers (so no API key, signature or token), query strings, request
or response bodies (so no card token, email or address). Ids, statuses and times only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from flask import Flask, Response, request

from shop import clock, metrics

_REQUESTS = logging.getLogger("shop.requests")
_CREATE_ENDPOINTS = ("acp.create_session",)
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_STARTED = "shop.request_started"  # WSGI environ key: perf_counter() when the request came in


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": clock.iso(int(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = metrics.event_fields(record) or getattr(record, "shop_request", None)
        if fields:
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def json_logs_enabled(env_value: str | None) -> bool:
    """True when SHOP_LOG_FORMAT asks for JSON lines."""
    return (env_value or "").strip().lower() == "json"


def _install_json_handler() -> None:
    logger = logging.getLogger("shop")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return  # one handler per process, however many apps are made
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # each record once, as JSON, not again through the root logger


def _session_id(response: Response) -> str | None:
    found = (request.view_args or {}).get("checkout_session_id")
    if found is None and request.endpoint in _CREATE_ENDPOINTS and response.status_code == 201:
        body = response.get_json(silent=True)
        found = body.get("id") if isinstance(body, dict) else None
    return found


def init_app(app: Flask, json_logs: bool) -> None:
    """Time every request; with json_logs, log one JSON line per request too."""
    if json_logs:
        _install_json_handler()
    inner = app.wsgi_app
    # The start time rides in the WSGI environ (a middleware costs less than a Flask
    # before_request hook and `g`); histogram children are looked up once per label set.
    children: dict[tuple[str, str, int], Any] = {}

    def timed(environ: dict[str, Any], start_response: Any) -> Any:
        environ[_STARTED] = time.perf_counter()
        return inner(environ, start_response)

    app.wsgi_app = timed  # type: ignore[method-assign]

    @app.after_request
    def _observe(response: Response) -> Response:
        current = request._get_current_object()  # one proxy hop
        started = current.environ.get(_STARTED)
        if started is None:
            return response
        seconds = time.perf_counter() - started
        method = current.method if current.method in _METHODS else "other"  # bounded labels
        key = (current.endpoint or "unmatched", method, response.status_code // 100)
        child = children.get(key)
        if child is None:
            child = children[key] = metrics.HTTP_SECONDS.labels(
                endpoint=key[0], method=key[1], code=f"{key[2]}xx"
            )
        child.observe(seconds)
        if json_logs:
            fields = {
                "request_id": response.headers.get("Request-Id"),
                "method": current.method,
                "path": current.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
            }
            session_id = _session_id(response)
            if session_id:
                fields["session_id"] = session_id
            _REQUESTS.info("request", extra={"shop_request": fields})
        return response
