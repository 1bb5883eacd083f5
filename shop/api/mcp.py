"""ACP over MCP (binding 2026-04-17): `POST /mcp`, MCP's Streamable HTTP transport, stateless.

A small JSON-RPC 2.0 dispatcher in Flask (docs/decisions.md says why not the SDK's server):
`initialize`, `ping`, `tools/list` (the five checkout tools, schemas bundled by `mcp_tools`)
and `tools/call`, which `mcp_rest` runs as the REST request it stands for. Every answer is one
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

from shop import fast_json
from shop.api import json_body
from shop.api.mcp_rest import call_rest, minted_key
from shop.api.mcp_tools import BINDING_VERSION, ROUTES, build_tools
from shop.security import bearer_token, constant_time_equals
from shop.state import get_state

bp = Blueprint("mcp", __name__)
log = logging.getLogger("shop.mcp")

# MCP revisions whose Streamable HTTP transport this endpoint speaks (initialize handshake).
PROTOCOL_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
ACP_ERROR = -32000  # every ACP error, as the binding says; the ACP Error is in `data`
_TOOLS_KEY = "shop.mcp_tools"


class RpcError(Exception):
    """A JSON-RPC error answer: code, message, the ACP-shaped `data`, and the HTTP status."""

    def __init__(
        self, code: int, message: str, data: dict[str, Any] | None = None, http: int = 200
    ):
        super().__init__(message)
        self.code, self.message, self.data, self.http = code, message, data, http


def _invalid(code: int, message: str, param: str | None = None, http: int = 200) -> RpcError:
    data = {"type": "invalid_request", "code": "invalid_params", "message": message}
    if code != INVALID_PARAMS:
        data["code"] = "invalid_jsonrpc"
    if param:
        data["param"] = param
    return RpcError(code, message, data, http)


def _answer(message_id: Any, payload: dict[str, Any], http: int = 200) -> Response:
    body = {"jsonrpc": "2.0", "id": message_id, **payload}
    return Response(fast_json.dumps_bytes(body), status=http, mimetype="application/json")


def _error(message_id: Any, exc: RpcError, headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    response = _answer(message_id, {"error": error}, exc.http)
    response.headers.update(headers or {})
    return response


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
        raise _invalid(
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


def _meta(arguments: dict[str, Any]) -> dict[str, str]:
    meta = arguments.get("meta")
    if not isinstance(meta, dict):
        raise _invalid(INVALID_PARAMS, "arguments.meta is required: an object.", "$.meta")
    version = meta.get("api_version")
    if not isinstance(version, str) or not version.strip():
        raise _invalid(
            INVALID_PARAMS,
            "meta.api_version is required: the ACP API version as a string, e.g. "
            f"'{BINDING_VERSION}' (see /.well-known/acp.json).",
            "$.meta.api_version",
        )
    headers = {}
    for field, value in meta.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise _invalid(INVALID_PARAMS, f"meta.{field} must be a string.", f"$.meta.{field}")
        headers[field] = value
    return headers


def _acp_param(param: Any) -> Any:
    """Point a REST error's `param` into the tool's arguments ($.currency -> $.payload.currency)."""
    if param == "$.checkout_session_id":
        return "$.id"
    if isinstance(param, str) and (param == "$" or param.startswith(("$.", "$["))):
        return "$.payload" + param[1:]
    return param


def _call(params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    route = ROUTES.get(name) if isinstance(name, str) else None
    if route is None:
        raise _invalid(
            INVALID_PARAMS,
            f"Unknown tool '{str(name)[:80]}'; tools/list names the five: {', '.join(ROUTES)}.",
            "$.name",
        )
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise _invalid(INVALID_PARAMS, "params.arguments must be an object.", "$.arguments")
    meta = _meta(arguments)
    session_id = arguments.get("id")
    if route.takes_id and (not isinstance(session_id, str) or not session_id):
        raise _invalid(INVALID_PARAMS, f"{name} needs id: the checkout session id.", "$.id")
    payload = arguments.get("payload")
    if route.payload == "required" and not isinstance(payload, dict):
        raise _invalid(INVALID_PARAMS, f"{name} needs payload: an object.", "$.payload")
    if route.payload == "optional" and payload is not None and not isinstance(payload, dict):
        raise _invalid(INVALID_PARAMS, "payload must be an object when given.", "$.payload")
    if route.method == "POST" and not meta.get("idempotency_key", "").strip():
        meta["idempotency_key"] = minted_key()  # optional in the binding; replays need one
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    answer = call_rest(
        app,
        request.environ,
        route,
        session_id if route.takes_id else None,
        meta,
        payload if route.payload != "absent" else None,
    )
    if answer.status >= 400:
        data = dict(answer.body) if isinstance(answer.body, dict) else {}
        if "param" in data:
            data["param"] = _acp_param(data["param"])
        raise RpcError(ACP_ERROR, str(data.get("message", "error")), data)
    result_meta: dict[str, Any] = {"request_id": answer.request_id}
    if answer.idempotency_key:
        result_meta["idempotency_key"] = answer.idempotency_key
    if answer.replayed:
        result_meta["idempotent_replayed"] = True
    # The REST body, as the binding's examples show `result`, plus MCP's CallToolResult
    # fields, so MCP clients (which read `content`/`structuredContent`) get it as well.
    return {
        **answer.body,
        "content": [{"type": "text", "text": fast_json.dumps(answer.body)}],
        "structuredContent": answer.body,
        "isError": False,
        "_meta": result_meta,
    }


def _dispatch(message: Any) -> Response:
    if isinstance(message, list):
        raise _invalid(
            INVALID_REQUEST, "JSON-RPC batches are not supported; send one message.", http=400
        )
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise _invalid(INVALID_REQUEST, "Send one JSON-RPC 2.0 message object.", http=400)
    if "method" not in message:  # a response or error from the client: nothing to answer
        return Response(status=202)
    method, message_id = message.get("method"), message.get("id")
    if not isinstance(method, str):
        raise _invalid(INVALID_REQUEST, "The JSON-RPC method must be a string.", http=400)
    if "id" not in message:  # a notification (initialized, cancelled …): accepted, no answer
        return Response(status=202)
    params = message.get("params") or {}
    if not isinstance(params, dict):
        raise _invalid(INVALID_PARAMS, "JSON-RPC params must be an object.")
    if method == "initialize":
        return _answer(message_id, {"result": _initialize(params)})
    if method == "ping":
        return _answer(message_id, {"result": {}})
    if method == "tools/list":
        return _answer(message_id, {"result": {"tools": _tools()}})
    if method == "tools/call":
        return _answer(message_id, {"result": _call(params)})
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
            raise _invalid(PARSE_ERROR, str(exc), http=400) from None
        if isinstance(message, dict):
            message_id = message.get("id")
        return _dispatch(message)
    except RpcError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http == 401 else None
        return _error(message_id, exc, headers)


@bp.route("/mcp", methods=["GET", "DELETE"])
def no_stream() -> Response:
    # Stateless: no server-initiated stream to open and no session to end.
    response = _error(
        None,
        _invalid(INVALID_REQUEST, f"{request.method} /mcp is not offered; POST JSON-RPC messages."),
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
    return _error(None, _invalid(INVALID_REQUEST, message, http=status))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error on POST /mcp")
    message = "Something went wrong on the store's side; the error is logged."
    return _error(
        None,
        RpcError(
            -32603,
            message,
            {"type": "processing_error", "code": "internal_error", "message": message},
            http=500,
        ),
    )
