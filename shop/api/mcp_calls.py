"""`tools/call` of the MCP binding: check the arguments, run the REST request, shape the result.

`meta`, `id` and `payload` are checked only as far as the tool's envelope goes (-32602); the
payload itself is read by the REST surface's own parser, so both transports accept and refuse
the same bodies. A REST error becomes JSON-RPC error -32000 with the ACP `Error` in `data`,
its `param` pointing into the tool's arguments.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from shop import fast_json
from shop.api.mcp_rest import call_rest, minted_key
from shop.api.mcp_rpc import ACP_ERROR, INVALID_PARAMS, RpcError, invalid
from shop.api.mcp_tools import BINDING_VERSION, ROUTES


def _meta(arguments: dict[str, Any]) -> dict[str, str]:
    meta = arguments.get("meta")
    if not isinstance(meta, dict):
        raise invalid(INVALID_PARAMS, "arguments.meta is required: an object.", "$.meta")
    version = meta.get("api_version")
    if not isinstance(version, str) or not version.strip():
        raise invalid(
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
            raise invalid(INVALID_PARAMS, f"meta.{field} must be a string.", f"$.meta.{field}")
        headers[field] = value
    return headers


def _acp_param(param: Any) -> Any:
    """Point a REST error's `param` into the tool's arguments ($.currency -> $.payload.currency)."""
    if param == "$.checkout_session_id":
        return "$.id"
    if isinstance(param, str) and (param == "$" or param.startswith(("$.", "$["))):
        return "$.payload" + param[1:]
    return param


def call_tool(app: Flask, environ: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Run one tools/call and return its result (raise RpcError for an error answer)."""
    name = params.get("name")
    route = ROUTES.get(name) if isinstance(name, str) else None
    if route is None:
        raise invalid(
            INVALID_PARAMS,
            f"Unknown tool '{str(name)[:80]}'; tools/list names the five: {', '.join(ROUTES)}.",
            "$.name",
        )
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise invalid(INVALID_PARAMS, "params.arguments must be an object.", "$.arguments")
    meta = _meta(arguments)
    session_id = arguments.get("id")
    if route.takes_id and (not isinstance(session_id, str) or not session_id):
        raise invalid(INVALID_PARAMS, f"{name} needs id: the checkout session id.", "$.id")
    payload = arguments.get("payload")
    if route.payload == "required" and not isinstance(payload, dict):
        raise invalid(INVALID_PARAMS, f"{name} needs payload: an object.", "$.payload")
    if route.payload == "optional" and payload is not None and not isinstance(payload, dict):
        raise invalid(INVALID_PARAMS, "payload must be an object when given.", "$.payload")
    if route.method == "POST" and not meta.get("idempotency_key", "").strip():
        meta["idempotency_key"] = minted_key()  # optional in the binding; replays need one
    answer = call_rest(
        app,
        environ,
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
