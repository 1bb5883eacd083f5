"""JSON-RPC 2.0 framing for /mcp: the error codes, the error carrying ACP's `Error`, answers."""

from __future__ import annotations

from typing import Any

from flask import Response

from shop import fast_json

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
INTERNAL_ERROR = -32603
ACP_ERROR = -32000  # every ACP error, as the binding says; the ACP Error is in `data`


class RpcError(Exception):
    """A JSON-RPC error answer: code, message, the ACP-shaped `data`, and the HTTP status."""

    def __init__(
        self, code: int, message: str, data: dict[str, Any] | None = None, http: int = 200
    ):
        super().__init__(message)
        self.code, self.message, self.data, self.http = code, message, data, http


def invalid(code: int, message: str, param: str | None = None, http: int = 200) -> RpcError:
    """A JSON-RPC-level refusal, with an ACP-shaped `data` naming the problem."""
    data = {"type": "invalid_request", "code": "invalid_params", "message": message}
    if code != INVALID_PARAMS:
        data["code"] = "invalid_jsonrpc"
    if param:
        data["param"] = param
    return RpcError(code, message, data, http)


def answer(message_id: Any, payload: dict[str, Any], http: int = 200) -> Response:
    """One JSON-RPC response as an application/json body."""
    body = {"jsonrpc": "2.0", "id": message_id, **payload}
    return Response(fast_json.dumps_bytes(body), status=http, mimetype="application/json")


def error_response(
    message_id: Any, exc: RpcError, headers: dict[str, str] | None = None
) -> Response:
    """The JSON-RPC error response for `exc`."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    response = answer(message_id, {"error": error}, exc.http)
    response.headers.update(headers or {})
    return response
