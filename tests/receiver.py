"""A real merchant-side order receiver on loopback, and its pytest fixtures.

It does what docs/receiving-orders.md tells a merchant to do: verify the signature on the raw
bytes with a constant-time compare, dedupe on the order id, record, answer 200. Tests switch it
to answer 500, to hang, or to be down. `pytest_plugins = ["tests.receiver"]` loads the fixtures.

Every body that arrives is also held to its contract: docs/order-payload.schema.json on the
merchant path, the webhook OpenAPI `WebhookEvent` (data = the full ACP `Order`) on the agent
path. A violation is recorded, and the fixtures fail the test at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.order_schemas import BUNDLE_ORDER, PAYLOAD_SCHEMA, WEBHOOK_EVENT

ORDER_SECRET = "whsec_test_order_receiver"
ACP_SECRET = "acp_test_agent_platform"
ORDERS_PATH = "/hooks/orders"
ACP_PATH = "/agentic_checkout/webhooks/order_events"
ACP_TOLERANCE_SECONDS = 300

OK, ERROR, HANG = "ok", "error", "hang"


def expected_signature(secret: str, raw: bytes) -> str:
    """Return base64(HMAC-SHA256(secret, raw)): the `Signature` a merchant expects."""
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def verify_signature(secret: str, raw: bytes, header: str | None) -> bool:
    """Check a `Signature` header against the raw body, in constant time."""
    return header is not None and hmac.compare_digest(expected_signature(secret, raw), header)


def verify_merchant_signature(
    secret: str, raw: bytes, header: str | None, now: float | None = None
) -> bool:
    """Check an ACP `Merchant-Signature: t=…,v1=…` header (300 s window), in constant time."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or len(v1) != 64:
        return False
    if abs((time.time() if now is None else now) - int(t)) > ACP_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


@dataclass(slots=True)
class Request:
    """One request as it arrived, and what the receiver made of it."""

    path: str
    headers: dict[str, str]
    raw: bytes
    verified: bool
    status: int = 0
    duplicate: bool = False

    def json(self) -> Any:
        """Return the body parsed."""
        return json.loads(self.raw)


@dataclass(eq=False)
class OrderReceiver:
    """A ThreadingHTTPServer on 127.0.0.1 that accepts orders like a careful merchant would."""

    secret: str | None = ORDER_SECRET
    acp_secret: str = ACP_SECRET
    mode: str = OK  # ok | error (HTTP 500) | hang (sleep hang_seconds, then answer)
    hang_seconds: float = 5.0
    port: int = 0
    requests: list[Request] = field(default_factory=list)  # everything that arrived
    deliveries: list[Request] = field(default_factory=list)  # accepted, first time only
    violations: list[str] = field(default_factory=list)  # bodies that break their schema
    connections: int = 0  # TCP connections accepted (kept-alive ones carry several requests)
    # Validating every body costs ~15 ms of this process's CPU: a load test that only counts
    # orders turns it off, so the receiver is not the bottleneck it measures through.
    check_schema: bool = True
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _open: set[Any] = field(default_factory=set)  # the sockets of open connections
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Where to send merchant orders (orderWebhookUrl)."""
        return self.base_url + ORDERS_PATH

    @property
    def acp_url(self) -> str:
        """Where to send ACP order events (ACP_WEBHOOK_URL)."""
        return self.base_url + ACP_PATH

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Return the bodies of accepted deliveries, in arrival order."""
        return [d.json() for d in self.deliveries]

    def start(self) -> OrderReceiver:
        """Listen (again) on the same port; the first start picks a free one."""
        self._release.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="order-receiver",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: close the socket (connections are refused) and release hung requests."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:  # kept-alive connections end too, as when a real receiver stops
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    down = stop

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` orders were accepted (or the timeout passes); return them."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.orders

    def _accept(self, path: str, headers: dict[str, str], raw: bytes) -> Request:
        if path == ACP_PATH:
            verified = verify_merchant_signature(
                self.acp_secret, raw, headers.get("Merchant-Signature")
            )
        elif self.secret is not None:
            verified = verify_signature(self.secret, raw, headers.get("Signature"))
        else:
            verified = True  # an unsigned receiver (no ORDER_WEBHOOK_SECRET)
        request = Request(path, headers, raw, verified)
        problems = _schema_violations(path, raw) if self.check_schema else []
        with self._lock:
            self.requests.append(request)
            self.violations.extend(problems)
        if self.mode == HANG:
            self._release.wait(self.hang_seconds)
        if self.mode == ERROR:
            request.status = 500
        elif not verified or path not in (ORDERS_PATH, ACP_PATH):
            request.status = 401 if verified is False else 404
        else:
            try:
                key = _dedupe_key(path, request.json())
            except (ValueError, KeyError, TypeError):
                request.status = 400
                return request
            request.status = 200
            with self._lock:
                request.duplicate = key in self._seen
                if not request.duplicate:
                    self._seen.add(key)
                    self.deliveries.append(request)
        return request


# What each path's body must validate against: (name, validator, where in the body).
_CONTRACTS = {
    ORDERS_PATH: [("order payload", PAYLOAD_SCHEMA, ())],
    ACP_PATH: [("WebhookEvent", WEBHOOK_EVENT, ()), ("Order", BUNDLE_ORDER, ("data",))],
}


def _schema_violations(path: str, raw: bytes) -> list[str]:
    """Say how a body breaks its published schema (nothing when it holds)."""
    if path not in _CONTRACTS:
        return []
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return [f"{path}: the body is not JSON ({exc})"]
    found = []
    for name, validator, inside in _CONTRACTS[path]:
        part = body
        for key in inside:
            part = part.get(key) if isinstance(part, dict) else None
        found += [
            f"{path} ({name}) {list(error.path)}: {error.message}"
            for error in validator.iter_errors(part)
        ]
    return found


def assert_no_violations(receiver: OrderReceiver) -> None:
    """Fail when any body the receiver got broke its schema."""
    assert not receiver.violations, "deliveries that break their schema:\n" + "\n".join(
        receiver.violations
    )


def _dedupe_key(path: str, body: dict[str, Any]) -> tuple[str, str]:
    if path == ACP_PATH:
        return body["data"]["id"], f"acp:{body['type']}:{body['data'].get('status')}"
    return body["order"]["id"], body.get("event", "order.created")


_ANSWERS = {
    200: b'{"received":true}',
    401: b'{"error":"bad signature"}',
    500: b'{"error":"receiver is failing on purpose"}',
}


def _handler(receiver: OrderReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with receiver._lock:
                receiver.connections += 1
                receiver._open.add(self.connection)

        def finish(self) -> None:
            with receiver._lock:
                receiver._open.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = receiver._accept(self.path, dict(self.headers.items()), raw)
            body = _ANSWERS.get(request.status, b'{"error":"rejected"}')
            try:
                self.send_response(request.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting (hang mode)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def order_receiver() -> Iterator[OrderReceiver]:
    """A running receiver that expects `Signature` made with ORDER_SECRET."""
    receiver = OrderReceiver().start()
    yield receiver
    receiver.stop()
    assert_no_violations(receiver)


@pytest.fixture
def make_order_receiver() -> Iterator[Callable[..., OrderReceiver]]:
    """A factory for receivers with other settings, e.g. make_order_receiver(secret=None)."""
    started: list[OrderReceiver] = []

    def factory(**kwargs: Any) -> OrderReceiver:
        receiver = OrderReceiver(**kwargs).start()
        started.append(receiver)
        return receiver

    yield factory
    for receiver in started:
        receiver.stop()
    for receiver in started:
        assert_no_violations(receiver)
