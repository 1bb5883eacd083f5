"""A tool call of the MCP binding, run as the REST request it stands for.

`meta` becomes the ACP headers, `id` the path's session id and `payload` the JSON body; the
request then goes through the app's own WSGI entry (`app.wsgi_app`) exactly as if an agent had
sent it over REST: the same bearer check, API-Version check, signature check, Idempotency-Key
layer, checkout domain, stock, payments and order hand-off, and the same error rendering.
So MCP answers exactly the bodies REST answers, and nothing here knows what a session is.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask

from shop import fast_json
from shop.api.mcp_tools import Route

# meta field -> WSGI name of the ACP header it carries (the binding's "Header Mapping").
META_HEADERS = {
    "api_version": "HTTP_API_VERSION",
    "idempotency_key": "HTTP_IDEMPOTENCY_KEY",
    "request_id": "HTTP_REQUEST_ID",
    "user_agent": "HTTP_USER_AGENT",
    "accept_language": "HTTP_ACCEPT_LANGUAGE",
    "signature": "HTTP_SIGNATURE",
    "timestamp": "HTTP_TIMESTAMP",
}
# What the inner request keeps of the outer one: the server, the client's address, the host
# and proxy headers (links and api_base_url), and the bearer token (authentication is at the
# HTTP level of /mcp, and the REST guard checks the same token again).
_KEEP = {
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SCRIPT_NAME",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "HTTP_HOST",
    "HTTP_AUTHORIZATION",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_FORWARDED",
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.errors",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
}


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """What the REST surface answered: status, body (decoded JSON) and its ACP headers."""

    status: int
    body: Any
    request_id: str | None
    idempotency_key: str | None
    replayed: bool


def _path(route: Route, session_id: str | None) -> str:
    if session_id is None:
        return route.path
    # The id is one path segment: a "/" in it must not reach another route. WSGI's PATH_INFO
    # is the URL's bytes, UTF-8 here, read as latin-1.
    segment = session_id.replace("%", "%25").replace("/", "%2F")
    return route.path.replace("{id}", segment).encode("utf-8").decode("latin-1")


def _environ(
    outer: dict[str, Any], route: Route, session_id: str | None, meta: dict[str, str], body: bytes
) -> dict[str, Any]:
    environ = {
        name: value
        for name, value in outer.items()
        if name in _KEEP or name.startswith("HTTP_X_FORWARDED_")
    }
    for field, header in META_HEADERS.items():
        if field in meta:
            environ[header] = meta[field]
    environ.update(
        {
            "REQUEST_METHOD": route.method,
            "PATH_INFO": _path(route, session_id),
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
        }
    )
    return environ


def minted_key() -> str:
    """Return an Idempotency-Key for a tool call that brought none (the binding allows that)."""
    return f"mcp_{uuid.uuid4().hex}"


def call_rest(
    app: Flask,
    outer_environ: dict[str, Any],
    route: Route,
    session_id: str | None,
    meta: dict[str, str],
    payload: Any,
) -> RestAnswer:
    """Send one REST request through the app and return its answer."""
    body = b"" if payload is None else fast_json.dumps_bytes(payload)
    environ = _environ(outer_environ, route, session_id, meta, body)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = {name.lower(): value for name, value in headers}
        return lambda _data: None

    # A fresh application context: the inner request gets its own `g` and its own unit of
    # work (the transaction layer is reset when it ends), not the /mcp request's.
    with app.app_context():
        chunks = app.wsgi_app(environ, start_response)
        try:
            raw = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    headers = started["headers"]
    return RestAnswer(
        status=started["status"],
        body=fast_json.loads(raw) if raw else None,
        request_id=headers.get("request-id"),
        idempotency_key=meta.get("idempotency_key"),
        replayed=headers.get("idempotent-replayed") == "true",
    )
