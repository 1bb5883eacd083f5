"""Every released ACP version, read and answered in its own shapes (shop/api/acp_versions).

Each request body below is first checked against the version's own request schema (so the
test speaks the version as an agent built on it would); every answer is checked against the
version's response schema by the conftest guard and again explicitly here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import ACP_VERSIONS, ADDRESS_OR, assert_acp, join_deliveries

OLD = ("2025-09-29", "2025-12-12", "2026-01-16")
BUYER = {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"}


class VersionedAgent:
    """An agent built on one ACP version: its headers, its request shapes."""

    def __init__(self, client: Any, version: str) -> None:
        self.client = client
        self.version = version

    def send(self, method: str, path: str, body: Any = None, schema: str | None = None):
        if schema:
            assert_acp(body, schema, self.version)  # the test speaks the version's own shapes
        headers = {
            "Authorization": "Bearer demo",
            "API-Version": self.version,
            "Idempotency-Key": str(uuid.uuid4()),
        }
        if method == "GET":
            return self.client.get(path, headers=headers)
        return self.client.open(
            path,
            method=method,
            data=json.dumps(body or {}),
            headers=headers,
            content_type="application/json",
        )

    def create_body(self, *items: tuple[str, int], address: bool = True, **extra: Any):
        items = items or (("widget", 1),)
        if self.version in OLD:
            lines = [{"id": i, "quantity": q} for i, q in items]
        else:  # since 2026-01-30 an Item has no quantity: an id is repeated
            lines = [{"id": i} for i, q in items for _ in range(q)]
        if self.version in OLD:
            body: dict[str, Any] = {"items": lines, "buyer": BUYER}
            if address and self.version == "2025-09-29":
                body["fulfillment_address"] = ADDRESS_OR
            elif address:
                body["fulfillment_details"] = {"name": "Jo Roe", "address": ADDRESS_OR}
        else:
            body = {"line_items": lines, "currency": "usd", "capabilities": {}, "buyer": BUYER}
            if address:
                body["fulfillment_details"] = {"name": "Jo Roe", "address": ADDRESS_OR}
        body.update(extra)
        return body

    def create(self, *items: tuple[str, int], address: bool = True, **extra: Any):
        body = self.create_body(*items, address=address, **extra)
        return self.send("POST", "/checkout_sessions", body, "CheckoutSessionCreateRequest")

    def select(self, session: dict[str, Any], option_id: str):
        ids = [line["id"] for line in session["line_items"]]
        if self.version == "2025-09-29":
            body: dict[str, Any] = {"fulfillment_option_id": option_id}
        elif self.version in OLD:
            shipping = {"option_id": option_id, "item_ids": ids}
            body = {"selected_fulfillment_options": [{"type": "shipping", "shipping": shipping}]}
        else:
            body = {
                "selected_fulfillment_options": [
                    {"type": "shipping", "option_id": option_id, "item_ids": ids}
                ]
            }
        return self.send(
            "POST", f"/checkout_sessions/{session['id']}", body, "CheckoutSessionUpdateRequest"
        )

    def pay(self, session_id: str, token: str = "tok_visa"):
        if self.version in OLD:
            body: dict[str, Any] = {"payment_data": {"token": token, "provider": "stripe"}}
        else:
            credential = {"type": "spt", "token": token}
            body = {
                "payment_data": {
                    "handler_id": "card_tokenized",
                    "instrument": {"type": "card", "credential": credential},
                }
            }
        return self.send(
            "POST",
            f"/checkout_sessions/{session_id}/complete",
            body,
            "CheckoutSessionCompleteRequest",
        )


def _session(response: Any, version: str, status: int = 200) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert_acp(body, "CheckoutSessionWithOrder" if "order" in body else "CheckoutSession", version)
    return body


def _error(response: Any, version: str, status: int) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert_acp(body, "Error", version)
    return body


def _total(body: dict[str, Any]) -> int:
    return next(t["amount"] for t in body["totals"] if t["type"] == "total")


@pytest.fixture(params=ACP_VERSIONS)
def agent(request, client) -> VersionedAgent:
    return VersionedAgent(client, request.param)


def test_create_update_get_complete_in_the_versions_own_shapes(agent, app) -> None:
    version = agent.version
    created = _session(agent.create(("widget", 2)), version, 201)
    assert created["status"] == "ready_for_payment"
    if version in OLD:
        [line] = created["line_items"]
        assert line["item"] == {"id": "widget", "quantity": 2}
        assert (line["base_amount"], line["total"]) == (5998, 5998)
        assert "protocol" not in created and "capabilities" not in created
        assert created["payment_provider"]["provider"] == "stripe"
    else:
        assert created["protocol"] == {"version": version}
        handlers = created["capabilities"]["payment"]["handlers"]
        assert [h["id"] for h in handlers] == ["card_tokenized"]
        assert ("display_name" in handlers[0]) == (version == "2026-04-17")
    if version == "2025-09-29":
        assert created["fulfillment_address"]["postal_code"] == ADDRESS_OR["postal_code"]
        assert created["fulfillment_option_id"] == "standard"
    else:
        assert created["fulfillment_details"]["address"]["city"] == ADDRESS_OR["city"]
    standard = _total(created)

    updated = _session(agent.select(created, "express"), version)
    assert _total(updated) == standard + 1000
    if version == "2025-09-29":
        assert updated["fulfillment_option_id"] == "express"
    elif version in OLD:
        [selected] = updated["selected_fulfillment_options"]
        assert selected["type"] == "shipping"
        assert selected["shipping"]["option_id"] == "express"
    else:
        assert updated["selected_fulfillment_options"][0]["option_id"] == "express"

    fetched = _session(agent.send("GET", f"/checkout_sessions/{created['id']}"), version)
    # Delivery estimates are computed from the clock at each answer; the rest is the same.
    for answer in (fetched, updated):
        for option in answer["fulfillment_options"]:
            option.pop("earliest_delivery_time", None)
            option.pop("latest_delivery_time", None)
        answer.pop("updated_at", None)
    assert fetched == updated

    done = _session(agent.pay(created["id"]), version)
    assert done["status"] == "completed"
    assert done["order"]["id"] == f"order_{created['id']}"
    assert done["order"]["checkout_session_id"] == created["id"]
    join_deliveries()
    [order] = app.extensions["shop"].sink.orders
    assert order["totals"][-1]["amount"] == _total(done)


def test_cancel_in_the_versions_own_shapes(agent) -> None:
    created = _session(agent.create(), agent.version, 201)
    canceled = _session(
        agent.send("POST", f"/checkout_sessions/{created['id']}/cancel", {}), agent.version
    )
    assert canceled["status"] == "canceled"
    assert [m["type"] for m in canceled["messages"]] == ["info"]
    again = _error(
        agent.send("POST", f"/checkout_sessions/{created['id']}/cancel", {}), agent.version, 405
    )
    assert again["code"] == "session_canceled"


def test_errors_name_the_versions_own_fields(agent) -> None:
    version = agent.version
    body = agent.create_body(("no-such-item", 1))
    unknown = _error(agent.send("POST", "/checkout_sessions", body), version, 400)
    assert unknown["code"] == "invalid_item"
    items = "$.items" if version in OLD else "$.line_items"
    assert unknown["param"] == f"{items}[0].id"

    missing = _error(agent.send("GET", "/checkout_sessions/cs_nope"), version, 404)
    assert missing["code"] == "session_not_found"

    unsigned = agent.send("POST", "/checkout_sessions", agent.create_body())
    assert unsigned.status_code == 201
    no_key = agent.client.post("/checkout_sessions", json=body, headers={"API-Version": version})
    assert _error(no_key, version, 401)["code"] == "unauthorized"


def test_messages_in_the_versions_own_shapes(agent) -> None:
    version = agent.version
    coupons = {} if version in OLD else {"coupons": ["NOPE"]}  # no coupons before 2026-01-30
    created = _session(agent.create(address=False, **coupons), version, 201)
    assert created["status"] == "not_ready_for_payment"
    by_param = {m.get("param"): m for m in created["messages"]}
    address = (
        "$.fulfillment_address" if version == "2025-09-29" else ("$.fulfillment_details.address")
    )
    assert by_param[address]["type"] == "error"
    assert by_param[address]["code"] == "missing"
    if coupons:
        assert by_param["$.coupons"]["code"] == "coupon_invalid"

    declined = _session(
        agent.pay(_session(agent.create(), version, 201)["id"], "tok_chargeDeclined"), version
    )
    assert declined["status"] == "ready_for_payment"
    assert [m["code"] for m in declined["messages"] if m["type"] == "error"] == ["payment_declined"]


def test_discovery_lists_every_enabled_version(client) -> None:
    body = client.get("/.well-known/acp.json").get_json()
    assert body["protocol"]["supported_versions"] == sorted(ACP_VERSIONS)
    assert body["protocol"]["version"] == "2026-04-17"


def test_config_may_narrow_the_versions(make_app) -> None:
    client = make_app(config={"acp": {"versions": ["2026-01-30", "2025-09-29"]}}).test_client()
    discovery = client.get("/.well-known/acp.json").get_json()["protocol"]
    assert discovery["supported_versions"] == ["2025-09-29", "2026-01-30"]
    assert discovery["version"] == "2026-01-30"
    refused = VersionedAgent(client, "2026-04-17").create()
    assert refused.status_code == 400
    assert refused.get_json()["code"] == "unsupported_api_version"
    assert refused.get_json()["supported_versions"] == ["2026-01-30", "2025-09-29"]
    assert VersionedAgent(client, "2025-09-29").create().status_code == 201


def test_a_version_the_store_cannot_speak_is_a_config_error(make_app) -> None:
    from shop.errors import ConfigError

    with pytest.raises(ConfigError, match=r"acp\.versions"):
        make_app(config={"acp": {"versions": ["2026-02-01"]}})


def test_every_released_version_has_an_adapter_and_a_schema() -> None:
    from shop.api.acp_versions import ADAPTERS
    from shop.config.settings import ACP_VERSIONS as SPOKEN

    assert sorted(ADAPTERS) == sorted(SPOKEN) == sorted(ACP_VERSIONS)


def test_a_reused_key_with_another_body_answers_the_versions_status(agent) -> None:
    """422 since ACP's idempotency SEP (2026-04-17); 409 in the RFC of every earlier version."""
    key = str(uuid.uuid4())
    first = agent.create_body(("widget", 1))
    headers = {"Authorization": "Bearer demo", "API-Version": agent.version, "Idempotency-Key": key}
    assert agent.client.post("/checkout_sessions", json=first, headers=headers).status_code == 201
    other = agent.create_body(("widget", 2))
    conflict = agent.client.post("/checkout_sessions", json=other, headers=headers)
    error = _error(conflict, agent.version, 422 if agent.version == "2026-04-17" else 409)
    assert error["code"] == "idempotency_conflict"


def test_an_expired_session_in_each_versions_words(agent, monkeypatch) -> None:
    """Before 2026-01-30 there is no `expired` status: such a session reads `canceled`."""
    from datetime import timedelta

    from shop import clock

    created = _session(agent.create(), agent.version, 201)
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(minutes=31))
    got = _session(agent.send("GET", f"/checkout_sessions/{created['id']}"), agent.version)
    assert got["status"] == ("canceled" if agent.version in OLD else "expired")
    [message] = [m for m in got["messages"] if m["type"] == "error"]
    assert message["code"] == ("invalid" if agent.version in OLD else "expired")
