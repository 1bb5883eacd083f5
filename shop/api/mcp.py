"""ACP over MCP (binding 2026-04-17): `POST /mcp`, MCP's Streamable HTTP transport, stateless.

A small JSON-RPC 2.0 dispatcher in Flask (docs/decisions.md says why not the SDK's server):
`initialize`, `ping`, `tools/list` (the five checkout tools, schemas bundled by `mcp_tools`)
and `tools/call`, which `mcp_calls` checks and `mcp_rest` runs as the REST request it stands
for (`mcp_rpc` frames the answers). Every answer is one
`application/json` body; no session id is issued, so any worker answers any message, and
`GET /mcp` (a server-to-client event stream) is 405, as the transport allows.

Authentication is at the HTTP level, as the binding says: `Authorization: Bearer <key>` from
SHOP_API_KEYS on every POST, else HTTP 401 with a JSON-RPC error. ACP errors from a tool are
JSON-RPC errors with code -32000 and the ACP `Error` in `data` (its `param` pointing into the
tool's arguments); a malformed tool call is -32602.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from shop.api import json_body
from shop.api.mcp_calls import call_tool
from shop.api.mcp_rpc import (
    ACP_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    answer,
    error_response,
    invalid,
)
from shop.api.mcp_tools import BINDING_VERSION, build_tools
from shop.security import bearer_token, constant_time_equals
from shop.state import get_state

bp = Blueprint("mcp", __name__)
log = logging.getLogger("shop.mcp")

# MCP revisions whose Streamable HTTP transport this endpoint speaks (initialize handshake).
PROTOCOL_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
_TOOLS_KEY = "shop.mcp_tools"


def _authenticate() -> None:
    settings = get_state().settings
    token = bearer_token(request.headers.get("Authorization"))
    matched = False
    for known in settings.api_keys:
        matched |= token is not None and constant_time_equals(known, token)
    if matched:
        return
    said = "is not one of this store's API keys" if token else "is missing"
    message = (
        f"The bearer token {said}: send 'Authorization: Bearer <api key>' on every request to "
        "/mcp; keys are configured in SHOP_API_KEYS."
        + (" In demo mode the key is 'demo'." if settings.demo_mode else "")
    )
    raise RpcError(
        ACP_ERROR,
        message,
        {"type": "invalid_request", "code": "unauthorized", "message": message},
        http=401,
    )


def _check_protocol_header() -> None:
    version = request.headers.get("MCP-Protocol-Version")
    if version and version not in PROTOCOL_VERSIONS:
        raise invalid(
            INVALID_REQUEST,
            f"MCP-Protocol-Version '{version[:40]}' is not supported; this server speaks "
            f"{', '.join(PROTOCOL_VERSIONS)} (initialize handshake, Streamable HTTP).",
            http=400,
        )


def _tools() -> list[dict[str, Any]]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    tools = app.extensions.get(_TOOLS_KEY)
    if tools is None:
        tools = app.extensions[_TOOLS_KEY] = build_tools()
    return tools


def _initialize(params: dict[str, Any]) -> dict[str, Any]:
    asked = params.get("protocolVersion")
    settings = get_state().settings
    return {
        "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1],
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "shop", "title": settings.store_name, "version": BINDING_VERSION},
        "instructions": (
            "Agentic Commerce Protocol checkout (MCP binding 2026-04-17). Send meta.api_version "
            f"(one of {', '.join(sorted(settings.acp_versions))}) and a fresh "
            "meta.idempotency_key with every create, update, complete and cancel."
        ),
    }


def _dispatch(message: Any) -> Response:
    if isinstance(message, list):
        raise invalid(
            INVALID_REQUEST, "JSON-RPC batches are not supported; send one message.", http=400
        )
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise invalid(INVALID_REQUEST, "Send one JSON-RPC 2.0 message object.", http=400)
    if "method" not in message:  # a response or error from the client: nothing to answer
        return Response(status=202)
    method, message_id = message.get("method"), message.get("id")
    if not isinstance(method, str):
        raise invalid(INVALID_REQUEST, "The JSON-RPC method must be a string.", http=400)
    if "id" not in message:  # a notification (initialized, cancelled …): accepted, no answer
        return Response(status=202)
    params = message.get("params") or {}
    if not isinstance(params, dict):
        raise invalid(INVALID_PARAMS, "JSON-RPC params must be an object.")
    if method == "initialize":
        return answer(message_id, {"result": _initialize(params)})
    if method == "ping":
        return answer(message_id, {"result": {}})
    if method == "tools/list":
        return answer(message_id, {"result": {"tools": _tools()}})
    if method == "tools/call":
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return answer(message_id, {"result": call_tool(app, request.environ, params)})
    raise RpcError(
        METHOD_NOT_FOUND,
        f"Method '{method[:80]}' not found; this server offers initialize, ping, tools/list "
        "and tools/call.",
    )


@bp.post("/mcp")
def endpoint() -> Response:
    message_id = None
    try:
        _authenticate()
        _check_protocol_header()
        try:
            message = json_body.loads(request.get_data(cache=True))
        except json_body.BodyError as exc:
            raise invalid(PARSE_ERROR, str(exc), http=400) from None
        if isinstance(message, dict):
            message_id = message.get("id")
        return _dispatch(message)
    except RpcError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http == 401 else None
        return error_response(message_id, exc, headers)


@bp.route("/mcp", methods=["GET", "DELETE"])
def no_stream() -> Response:
    # Stateless: no server-initiated stream to open and no session to end.
    response = error_response(
        None,
        invalid(INVALID_REQUEST, f"{request.method} /mcp is not offered; POST JSON-RPC messages."),
    )
    response.status_code = 405
    response.headers["Allow"] = "POST"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = (
        "The request body is larger than 1 MiB; send a smaller message."
        if status == 413
        else f"{exc.name}: {exc.description}"
    )
    return error_response(None, invalid(INVALID_REQUEST, message, http=status))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error on POST /mcp")
    message = "Something went wrong on the store's side; the error is logged."
    return error_response(
        None,
        RpcError(
            INTERNAL_ERROR,
            message,
            {"type": "processing_error", "code": "internal_error", "message": message},
            http=500,
        ),
    )
