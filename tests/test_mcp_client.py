"""The official MCP Python SDK's client against the store's /mcp, under real gunicorn workers.

The client connects as it would to any MCP server (Streamable HTTP, its default negotiation:
a `server/discover` probe, then the initialize handshake), lists the tools and buys through
them; the order reaches the merchant's receiver like any REST order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import ADDRESS_CA, API_VERSION, acp_validator
from tests.gunicorn_server import gunicorn, store_env

TOOLS = {
    "create_checkout_session",
    "get_checkout_session",
    "update_checkout_session",
    "complete_checkout_session",
    "cancel_checkout_session",
}


@pytest.fixture
def server(shop_files, order_receiver):
    env = store_env(
        shop_files,
        order_receiver,
        SHOP_API_KEYS="agent:sk_agent_secret",
        ACP_SIGNING_SECRET="",
    )
    with gunicorn(env, workers=2, threads=1) as url:
        yield url


def _client(url: str, token: str = "sk_agent_secret") -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def _session(result: Any) -> dict[str, Any]:
    """The ACP body of a tool result, checked to be the same in every place it is given."""
    assert not result.is_error
    body = result.structured_content
    assert json.loads(result.content[0].text) == body
    name = "CheckoutSessionWithOrder" if "order" in body else "CheckoutSession"
    errors = list(acp_validator(name).iter_errors(body))
    assert not errors, errors[:3]
    return body


def _meta(key: str | None = None) -> dict[str, str]:
    return {"api_version": API_VERSION, "idempotency_key": key or str(uuid.uuid4())}


def test_mcp_client_buys_through_the_five_tools(server, order_receiver):
    async def scenario() -> dict[str, Any]:
        async with _client(server) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            for tool in listed.tools:
                assert "$ref" not in json.dumps(tool.input_schema)

            created = _session(
                await client.call_tool(
                    "create_checkout_session",
                    {
                        "meta": _meta(),
                        "payload": {
                            "currency": "usd",
                            "capabilities": {},
                            "line_items": [{"id": "widget"}],
                            "buyer": {"email": "jane@example.com", "first_name": "Jane"},
                        },
                    },
                )
            )
            assert created["status"] == "not_ready_for_payment"
            session_id = created["id"]

            updated = _session(
                await client.call_tool(
                    "update_checkout_session",
                    {
                        "meta": _meta(),
                        "id": session_id,
                        "payload": {
                            "fulfillment_details": {"name": "Jane Doe", "address": ADDRESS_CA}
                        },
                    },
                )
            )
            assert updated["status"] == "ready_for_payment"

            pay = {
                "payment_data": {
                    "handler_id": "card_tokenized",
                    "instrument": {
                        "type": "card",
                        "credential": {"type": "spt", "token": "tok_visa"},
                    },
                }
            }
            complete_args = {"meta": _meta("pay-once"), "id": session_id, "payload": pay}
            first = await client.call_tool("complete_checkout_session", complete_args)
            completed = _session(first)
            assert completed["status"] == "completed"
            assert completed["order"]["id"] == f"order_{session_id}"
            assert not (first.meta or {}).get("idempotent_replayed")

            # The same idempotency_key and payload: the stored answer, not a second charge.
            again = await client.call_tool("complete_checkout_session", complete_args)
            assert _session(again) == completed
            assert again.meta["idempotent_replayed"] is True
            assert again.meta["idempotency_key"] == "pay-once"

            # The same key with another payload is the REST surface's 422 conflict.
            with pytest.raises(MCPError) as conflict:
                await client.call_tool(
                    "complete_checkout_session",
                    {**complete_args, "payload": {**pay, "buyer": {"first_name": "Other"}}},
                )
            assert conflict.value.error.code == -32000
            assert conflict.value.error.data["code"] == "idempotency_conflict"

            fetched = _session(
                await client.call_tool(
                    "get_checkout_session", {"meta": {"api_version": API_VERSION}, "id": session_id}
                )
            )
            assert fetched["status"] == "completed"

            with pytest.raises(MCPError) as unknown:
                await client.call_tool(
                    "get_checkout_session",
                    {"meta": {"api_version": API_VERSION}, "id": "cs_does_not_exist"},
                )
            error = unknown.value.error
            assert error.code == -32000
            assert error.data["type"] == "invalid_request"
            assert error.data["code"] == "session_not_found"
            assert error.data["param"] == "$.id"
            assert not list(acp_validator("Error").iter_errors(error.data))
            return completed

    completed = asyncio.run(scenario())
    orders = order_receiver.wait_for(1)
    assert [o["order"]["id"] for o in orders] == [completed["order"]["id"]]


def test_mcp_client_with_a_wrong_token_is_refused(server):
    async def scenario() -> None:
        async with _client(server, token="sk_not_a_key") as client:
            await client.list_tools()

    with pytest.raises(BaseException) as refused:
        asyncio.run(scenario())
    # The client raises at connect, inside its task group: find the MCPError in the group.
    errors = [refused.value]
    while isinstance(errors[0], BaseExceptionGroup):
        errors = list(errors[0].exceptions)
    assert isinstance(errors[0], MCPError), refused.value
    assert errors[0].error.data["code"] == "unauthorized"
