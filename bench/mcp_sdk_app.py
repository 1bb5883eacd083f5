"""The road not taken, for bench/mcp_transport.py: the official MCP SDK's server (ASGI, uvicorn).

The SDK's low-level `Server`, stateless with JSON responses, offers the same five tools and
runs each call through the same `shop.api.mcp_rest.call_rest` as the store's /mcp (in a worker
thread, since the Flask app blocks). Served with `uvicorn bench.mcp_sdk_app:app`.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server

from shop import create_app
from shop.api.mcp_rest import call_rest
from shop.api.mcp_tools import ROUTES, build_tools

shop_app = create_app()
TOOLS = [types.Tool.model_validate(tool) for tool in build_tools()]
ENVIRON = {
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "127.0.0.1",
    "HTTP_AUTHORIZATION": "Bearer demo",
    "wsgi.url_scheme": "http",
}


async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    route = ROUTES[params.name]
    answer = await anyio.to_thread.run_sync(
        call_rest,
        shop_app,
        ENVIRON,
        route,
        arguments.get("id"),
        dict(arguments.get("meta") or {}),
        arguments.get("payload"),
    )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=str(answer.body))],
        structured_content=answer.body,
        is_error=answer.status >= 400,
    )


server = Server("shop-sdk", on_list_tools=list_tools, on_call_tool=call_tool)
# host 0.0.0.0: no DNS-rebinding Host check (the store's /mcp makes none either; bearer auth).
app = server.streamable_http_app(stateless_http=True, json_response=True, host="0.0.0.0")
