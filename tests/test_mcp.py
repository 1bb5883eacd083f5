"""/mcp in process: the tool schemas, the JSON-RPC envelope, errors, auth and the REST mapping.

The official client's run under gunicorn is tests/test_mcp_client.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from shop import clock
from shop.api.fingerprint import canonical_json
from shop.api.mcp_tools import build_tools
from tests.conftest import ACP_VERSIONS, ADDRESS_CA, API_VERSION, SPEC, acp_validator, cart, payment

AUTH = {"Authorization": "Bearer demo"}


def rpc(client: Any, method: str, params: Any = None, headers: dict[str, str] | None = None):
    message = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        message["params"] = params
    response = client.post("/mcp", json=message, headers=AUTH if headers is None else headers)
    return response.status_code, response.get_json()


def call(client: Any, name: str, **arguments: Any) -> dict[str, Any]:
    arguments.setdefault("meta", {"api_version": API_VERSION})
    status, body = rpc(client, "tools/call", {"name": name, "arguments": arguments})
    assert status == 200
    return body


def _meta(key: str | None = None) -> dict[str, str]:
    return {"api_version": API_VERSION, "idempotency_key": key or str(uuid.uuid4())}


# ------------------------------------------------------------------ tool schemas


def _reference_validator(tool: str) -> Draft202012Validator:
    """The binding's own schema for a tool, its relative $refs resolved by a registry."""
    bundle = json.loads((SPEC / "schema.agentic_checkout.json").read_text())
    openrpc = json.loads((SPEC / "openrpc.agentic_checkout.json").read_text())
    method = next(m for m in openrpc["methods"] if m["name"] == tool)
    properties = {}
    for param in method["params"]:
        text = json.dumps(param["schema"]).replace(
            "../json-schema/schema.agentic_checkout.json", bundle["$id"]
        )
        text = text.replace('"#/components/schemas/meta"', json.dumps("urn:meta"))
        properties[param["name"]] = json.loads(text)
    meta = {"$schema": bundle["$schema"], **openrpc["components"]["schemas"]["meta"]}
    registry = Registry().with_resources(
        [
            (bundle["$id"], Resource.from_contents(bundle)),
            ("urn:meta", Resource.from_contents(meta)),
        ]
    )
    required = [p["name"] for p in method["params"] if p.get("required")]
    return Draft202012Validator(
        {"type": "object", "properties": properties, "required": required}, registry=registry
    )


def test_tools_are_the_five_with_standalone_schemas():
    tools = build_tools()
    assert [t["name"] for t in tools] == [
        "create_checkout_session",
        "get_checkout_session",
        "update_checkout_session",
        "complete_checkout_session",
        "cancel_checkout_session",
    ]
    for tool in tools:
        assert "$ref" not in json.dumps(tool["inputSchema"])
        Draft202012Validator.check_schema(tool["inputSchema"])
        assert "meta" in tool["inputSchema"]["required"]
    required = {t["name"]: t["inputSchema"]["required"] for t in tools}
    assert required["cancel_checkout_session"] == ["meta", "id"]  # payload optional
    assert required["create_checkout_session"] == ["meta", "payload"]


def _argument_cases() -> list[tuple[str, dict[str, Any]]]:
    examples = json.loads((SPEC / "examples.mcp.agentic_checkout.json").read_text())
    cases = [
        (ex["params"]["name"], ex["params"]["arguments"])
        for ex in examples.values()
        if ex.get("method") == "tools/call"
    ]
    meta = {"api_version": API_VERSION}
    cases += [
        ("create_checkout_session", {"meta": meta, "payload": cart()}),
        ("create_checkout_session", {"meta": meta, "payload": {"line_items": []}}),
        ("create_checkout_session", {"meta": {}, "payload": {"currency": "usd"}}),
        ("complete_checkout_session", {"meta": meta, "id": "cs_1", "payload": payment()}),
        ("update_checkout_session", {"meta": meta, "id": 5, "payload": {"extra": 1}}),
        ("cancel_checkout_session", {"meta": meta, "id": "cs_1"}),
        ("get_checkout_session", {"meta": meta}),
    ]
    return cases


@pytest.mark.parametrize(("tool", "arguments"), _argument_cases())
def test_bundled_schema_judges_like_the_binding_own(tool, arguments):
    bundled = next(t for t in build_tools() if t["name"] == tool)["inputSchema"]
    ours = not list(Draft202012Validator(bundled).iter_errors(arguments))
    theirs = not list(_reference_validator(tool).iter_errors(arguments))
    assert ours == theirs


# ------------------------------------------------------------------ envelope


def test_initialize_ping_and_discovery(client):
    status, body = rpc(
        client,
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    )
    assert status == 200
    assert body["result"]["protocolVersion"] == "2025-06-18"
    assert body["result"]["capabilities"] == {"tools": {"listChanged": False}}
    _, body = rpc(client, "initialize", {"protocolVersion": "2099-01-01"})
    assert body["result"]["protocolVersion"] == "2025-11-25"
    assert rpc(client, "ping")[1] == {"jsonrpc": "2.0", "id": 7, "result": {}}
    notified = client.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=AUTH
    )
    assert notified.status_code == 202 and notified.data == b""
    discovery = client.get("/.well-known/acp.json").get_json()
    assert discovery["transports"] == ["rest", "mcp"]


@pytest.mark.parametrize(
    ("raw", "http", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', 400, -32700),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": NaN}', 400, -32700),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', 400, -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', 400, -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "resources/list"}', 200, -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}', 200, -32602),
    ],
)
def test_malformed_messages(client, raw, http, code):
    response = client.post("/mcp", data=raw, content_type="application/json", headers=AUTH)
    assert response.status_code == http
    assert response.get_json()["error"]["code"] == code


def test_http_level_auth_and_methods(client):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic ZGVtbzo="}):
        status, body = rpc(client, "tools/list", headers=headers)
        assert status == 401
        assert body["error"]["data"]["code"] == "unauthorized"
    response = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/mcp", headers=AUTH).status_code == 405
    status, body = rpc(client, "ping", headers={**AUTH, "MCP-Protocol-Version": "1999-01-01"})
    assert status == 400 and body["error"]["code"] == -32600


@pytest.mark.parametrize(
    ("name", "arguments", "param"),
    [
        ("buy_everything", {"meta": {"api_version": API_VERSION}}, "$.name"),
        ("get_checkout_session", {"id": "cs_1"}, "$.meta"),
        ("get_checkout_session", {"meta": {}, "id": "cs_1"}, "$.meta.api_version"),
        (
            "get_checkout_session",
            {"meta": {"api_version": 20260417}, "id": "cs_1"},
            "$.meta.api_version",
        ),
        ("get_checkout_session", {"meta": {"api_version": API_VERSION}}, "$.id"),
        ("create_checkout_session", {"meta": {"api_version": API_VERSION}}, "$.payload"),
        (
            "cancel_checkout_session",
            {"meta": {"api_version": API_VERSION}, "id": "x", "payload": []},
            "$.payload",
        ),
    ],
)
def test_invalid_params(client, name, arguments, param):
    body = (
        call(client, name, **arguments)
        if "meta" in arguments
        else rpc(client, "tools/call", {"name": name, "arguments": arguments})[1]
    )
    assert body["error"]["code"] == -32602
    assert body["error"]["data"]["param"] == param


# ------------------------------------------------------------------ the REST mapping


def _freeze_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the time still: delivery estimates are rendered from it, to the second."""
    moment = clock.now()
    monkeypatch.setattr(clock, "now", lambda: moment)


def test_results_are_the_rest_bodies(client, acp, monkeypatch):
    _freeze_clock(monkeypatch)
    created = call(
        client, "create_checkout_session", meta=_meta(), payload=cart(address=ADDRESS_CA)
    )
    result = created["result"]
    session = result["structuredContent"]
    assert json.loads(result["content"][0]["text"]) == session
    assert {k: v for k, v in result.items() if k in session} == session  # the binding's shape
    rest = acp.get(f"/checkout_sessions/{session['id']}").get_json()
    fetched = call(client, "get_checkout_session", id=session["id"])["result"]["structuredContent"]
    assert fetched == rest == session
    canceled = call(client, "cancel_checkout_session", id=session["id"])["result"]
    assert canceled["structuredContent"]["status"] == "canceled"
    assert canceled["_meta"]["idempotency_key"].startswith(
        "mcp_"
    )  # minted: the binding allows none
    again = call(client, "cancel_checkout_session", meta=_meta(), id=session["id"])
    assert again["error"]["code"] == -32000
    assert again["error"]["data"]["type"] == "invalid_request"


def test_errors_point_into_the_arguments(client):
    body = call(client, "create_checkout_session", meta=_meta(), payload={"currency": "usd"})
    assert body["error"]["code"] == -32000
    assert body["error"]["data"]["param"] == "$.payload.line_items"
    assert body["error"]["message"] == body["error"]["data"]["message"]
    body = call(
        client,
        "create_checkout_session",
        meta={**_meta(), "api_version": "2020-01-01"},
        payload=cart(),
    )
    assert body["error"]["data"]["code"] == "unsupported_api_version"
    assert API_VERSION in body["error"]["data"]["supported_versions"]


def test_idempotency_is_shared_with_rest(client, acp, monkeypatch):
    """One key, one body: the same record whether the agent used REST or MCP."""
    _freeze_clock(monkeypatch)
    key = str(uuid.uuid4())
    rest = acp.create(cart(), key=key)
    assert rest.status_code == 201
    over_mcp = call(client, "create_checkout_session", meta=_meta(key), payload=cart())["result"]
    assert over_mcp["_meta"]["idempotent_replayed"] is True
    assert over_mcp["structuredContent"] == rest.get_json()


def test_signed_tool_calls(make_app):
    secret = "acp_signing_test"
    client = make_app(env={"ACP_SIGNING_SECRET": secret}).test_client()
    timestamp = clock.iso(clock.epoch())
    payload = cart()
    # The signature covers "<timestamp>.<canonical JSON of payload>" (README "Signed ACP requests").
    signed = timestamp.encode() + b"." + canonical_json(payload)
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    meta = {**_meta(), "signature": base64.b64encode(digest).decode(), "timestamp": timestamp}
    assert call(client, "create_checkout_session", meta=meta, payload=payload)["result"]["id"]
    unsigned = call(client, "create_checkout_session", meta=_meta(), payload=payload)
    assert unsigned["error"]["data"]["code"] == "invalid_signature"
    other = {**meta, "idempotency_key": str(uuid.uuid4())}
    tampered = call(client, "create_checkout_session", meta=other, payload=cart(("widget", 3)))
    assert tampered["error"]["data"]["code"] == "invalid_signature"


@pytest.mark.parametrize("version", ACP_VERSIONS)
def test_each_version_answers_the_rest_body(client, acp, version, monkeypatch):
    """meta.api_version picks the version's shapes, exactly as the API-Version header does."""
    _freeze_clock(monkeypatch)
    session = acp.create(cart(address=ADDRESS_CA)).get_json()
    headers = {**AUTH, "API-Version": version}
    rest = client.get(f"/checkout_sessions/{session['id']}", headers=headers).get_json()
    meta = {"api_version": version}
    result = call(client, "get_checkout_session", meta=meta, id=session["id"])["result"]
    assert result["structuredContent"] == rest
    errors = list(acp_validator("CheckoutSession", version).iter_errors(rest))
    assert not errors, errors[:3]


def test_a_session_belongs_to_the_key_that_made_it_over_mcp(make_app):
    client = make_app(env={"SHOP_API_KEYS": "openai:tok-a,gemini:tok-b"}).test_client()
    key_a, key_b = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}

    def tool(headers: dict[str, str], name: str, **arguments: Any) -> dict[str, Any]:
        params = {"name": name, "arguments": {"meta": _meta(), **arguments}}
        return rpc(client, "tools/call", params, headers=headers)[1]

    created = tool(key_a, "create_checkout_session", payload=cart())["result"]
    other = tool(key_b, "get_checkout_session", id=created["id"])
    assert other["error"]["data"]["code"] == "session_not_found"
    assert other["error"]["data"]["param"] == "$.id"
    assert "jane@example.com" not in json.dumps(other)
    assert tool(key_a, "get_checkout_session", id=created["id"])["result"]["id"] == created["id"]
