"""Shared fixtures: a fresh app on a temporary SQLite file, an ACP client, schema validators."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from shop import create_app

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SPEC = ROOT / "shop" / "spec" / "acp" / "2026-04-17"
API_VERSION = "2026-04-17"
# Every released ACP version the store speaks, oldest first (shop/spec/acp/<version>/).
ACP_VERSIONS = ("2025-09-29", "2025-12-12", "2026-01-16", "2026-01-30", "2026-04-17")

pytest_plugins = ["tests.receiver", "tests.fake_psp", "tests.postgres_server"]


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Any:
    """Fail any test that tries to connect beyond loopback: the suite runs offline."""
    import ipaddress
    import socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"tests may not leave loopback (tried {address!r})")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]


# make_app(sink=FROM_CONFIG): the app builds its own sink from orderWebhookUrl and the
# environment, exactly as in production (the default is a RecordingSink).
FROM_CONFIG = "from-config"


class RecordingSink:
    """An OrderSink that keeps what it was given (for tests that are not about delivery)."""

    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []

    def deliver(self, order: dict[str, Any]) -> None:
        self.orders.append(order)


@pytest.fixture
def shop_files(tmp_path: Path) -> dict[str, Path]:
    """Copy the test config and catalog into a temp dir; tests may edit them."""
    config = tmp_path / "config.json"
    products = tmp_path / "products.json"
    shutil.copy(DATA / "config.json", config)
    shutil.copy(DATA / "products.json", products)
    return {
        "config": config,
        "products": products,
        "db": tmp_path / "shop.sqlite3",
        "dir": tmp_path,
    }


@pytest.fixture
def make_app(shop_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    """Return a factory: make_app(config={...}, env={...}, sink=...) -> Flask app."""
    for name in (
        "SHOP_API_KEYS",
        "STRIPE_SECRET_KEY",
        "ORDER_WEBHOOK_SECRET",
        "ACP_WEBHOOK_URL",
        "ACP_WEBHOOK_SECRET",
        "FEED_PASSWORD",
        "FORTER_WEBHOOK_SECRET",
        "ACP_SIGNING_SECRET",
        "ORDER_WEBHOOK_TIMEOUT",
        "TEST_WEBHOOK_SECRET",
        "STRIPE_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)
    apps = []

    def factory(
        config: dict[str, Any] | None = None, env: dict[str, str] | None = None, sink: Any = None
    ):
        overrides: dict[str, Any] = {
            "SHOP_CONFIG": str(shop_files["config"]),
            "SHOP_PRODUCTS": str(shop_files["products"]),
            "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
            **(env or {}),
        }
        if config:
            overrides["config"] = config
        if sink is None:
            sink = RecordingSink()
        app = create_app(overrides, order_sink=None if sink == FROM_CONFIG else sink)
        app.config["TESTING"] = True
        app.config["TESTING_NO_SWEEPER"] = True
        _validate_acp_responses(app, violations)
        apps.append(app)
        return app

    violations: list[str] = []
    yield factory
    join_deliveries()
    assert not violations, "ACP responses that break the official schema:\n" + "\n".join(violations)
    from shop.storage.models import db

    for app in apps:
        with app.app_context():
            db.engine.dispose()


# Every response on an ACP path is checked against the official schema, in every test.
_ACP_PREFIXES = ("/checkout_sessions", "/acp/checkout", "/.well-known/acp.json")


def _acp_schema_name(path: str, status: int, body: Any) -> str:
    if path.startswith("/.well-known/"):
        return "DiscoveryResponse" if status == 200 else "Error"
    if status >= 400:
        return "Error"
    return "CheckoutSessionWithOrder" if "order" in body else "CheckoutSession"


def _validate_acp_responses(app: Any, violations: list[str]) -> None:
    """Record every ACP response body that does not validate against the official schema."""

    @app.after_request
    def _check(response: Any) -> Any:
        from flask import request

        if not request.path.startswith(_ACP_PREFIXES) or response.direct_passthrough:
            return response
        body = response.get_json(silent=True)
        if body is None:
            violations.append(
                f"{request.method} {request.path} -> {response.status_code}: the body is not JSON"
            )
            return response
        name = _acp_schema_name(request.path, response.status_code, body)
        version = _answered_version(request, name, body)
        for error in acp_errors(body, name, version):
            violations.append(
                f"{request.method} {request.path} -> {response.status_code} "
                f"({name}) [{version}] {list(error.path)}: {error.message}"
            )
        return response


def _answered_version(request: Any, name: str, body: Any) -> str:
    """The version whose schema an ACP response must meet: the request's API-Version.

    Discovery and the answers to a missing or unsupported API-Version are today's.
    """
    version = request.headers.get("API-Version", "").strip()
    if name == "DiscoveryResponse" or version not in ACP_VERSIONS:
        return API_VERSION
    if name == "Error" and "supported_versions" in body:
        return API_VERSION
    return version


def join_deliveries(timeout: float = 10.0) -> None:
    """Wait until the order hand-off thread has sent everything queued (so no send outlives
    its test); the thread itself waits, idle, for the next order."""
    from shop.orders import wait_for_hand_offs

    wait_for_hand_offs(timeout)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AcpClient:
    """Sends ACP requests with the demo key, the API version and a fresh Idempotency-Key."""

    def __init__(self, client: Any, token: str = "demo") -> None:
        self.client = client
        self.token = token

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "API-Version": API_VERSION,
            "Idempotency-Key": key or str(uuid.uuid4()),
        }
        headers.update(extra)
        return headers

    def post(self, path: str, body: Any = None, key: str | None = None, **extra: str):
        return self.client.post(
            path,
            data=json.dumps(body if body is not None else {}),
            content_type="application/json",
            headers=self.headers(key, **extra),
        )

    def get(self, path: str):
        return self.client.get(path, headers=self.headers())

    def create(self, body: dict[str, Any] | None = None, **kw: Any):
        return self.post("/checkout_sessions", body or cart(), **kw)

    def complete(self, session_id: str, token: str = "tok_visa", key: str | None = None):
        return self.post(f"/checkout_sessions/{session_id}/complete", payment(token), key=key)


@pytest.fixture
def acp(client) -> AcpClient:
    return AcpClient(client)


ADDRESS_CA = {
    "name": "Jane Doe",
    "line_one": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "country": "US",
    "postal_code": "94105",
}
ADDRESS_OR = {
    "name": "Jo Roe",
    "line_one": "2 Pine St",
    "city": "Portland",
    "state": "OR",
    "country": "US",
    "postal_code": "97201",
}


def cart(
    *items: tuple[str, int], address: dict[str, Any] | None = ADDRESS_OR, **extra: Any
) -> dict[str, Any]:
    """Build a create-session body."""
    body: dict[str, Any] = {
        "currency": "usd",
        "capabilities": {},
        "line_items": [{"id": i, "quantity": q} for i, q in (items or (("widget", 1),))],
        "buyer": {"email": "jane@example.com", "first_name": "Jane"},
    }
    if address is not None:
        body["fulfillment_details"] = {"name": address["name"], "address": address}
    body.update(extra)
    return body


def payment(token: str = "tok_visa") -> dict[str, Any]:
    """Build a complete-session body with the current payment_data shape."""
    return {
        "payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": token}},
        }
    }


def _draft4_exclusive_minimum(node: Any) -> Any:
    """Read draft-4's `minimum: 0, exclusiveMinimum: true` as 2020-12's `exclusiveMinimum: 0`.

    2025-09-29's Item.quantity is written the draft-4 way inside a 2020-12 schema, where a
    boolean exclusiveMinimum is not allowed (jsonschema reads True as the number 1, refusing
    quantity 1). The intent, a quantity above 0, is what the tests check.
    """
    if isinstance(node, dict):
        node = {k: _draft4_exclusive_minimum(v) for k, v in node.items()}
        if node.get("exclusiveMinimum") is True and "minimum" in node:
            node["exclusiveMinimum"] = node.pop("minimum")
        return node
    if isinstance(node, list):
        return [_draft4_exclusive_minimum(v) for v in node]
    return node


def _registry(version: str) -> tuple[Registry, dict[str, Any]]:
    path = ROOT / "shop" / "spec" / "acp" / version / "schema.agentic_checkout.json"
    schema = _draft4_exclusive_minimum(json.loads(path.read_text()))
    resource = Resource.from_contents(schema)
    return Registry().with_resource(schema["$id"], resource), schema


# Every version's bundle has the same $id, so each gets a registry of its own.
_SCHEMAS = {version: _registry(version) for version in ACP_VERSIONS}


def acp_validator(name: str, version: str = API_VERSION) -> Draft202012Validator:
    """Return a validator for one $defs entry of a version's official ACP checkout schema.

    Formats (uri, date-time, email) are checked too: rfc3986-validator and rfc3339-validator
    are installed for exactly this.
    """
    registry, schema = _SCHEMAS[version]
    return Draft202012Validator(
        {"$ref": f"{schema['$id']}#/$defs/{name}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def acp_errors(body: Any, name: str, version: str = API_VERSION) -> list[Any]:
    """Every violation of a version's `name` schema by body.

    2025-09-29's CheckoutSessionWithOrder is allOf [CheckoutSessionBase, {order}] while that
    base has additionalProperties false and no `order`: no body can meet it (its OpenAPI says
    the same; 2025-12-12 added `order` to the base). For that version a completed session is
    checked as the base without `order`, and `order` as an Order.
    """
    if version == "2025-09-29" and name == "CheckoutSessionWithOrder" and "order" in body:
        rest = {k: v for k, v in body.items() if k != "order"}
        return [
            *acp_validator("CheckoutSession", version).iter_errors(rest),
            *acp_validator("Order", version).iter_errors(body["order"]),
        ]
    return list(acp_validator(name, version).iter_errors(body))


def assert_acp(body: dict[str, Any], name: str, version: str = API_VERSION) -> None:
    """Fail with every schema violation when body is not a valid ACP `name` of `version`."""
    errors = sorted(acp_errors(body, name, version), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
