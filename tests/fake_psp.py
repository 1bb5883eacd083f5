"""A fake Stripe + Razorpay API on loopback, called by the real `stripe` and `razorpay` libraries.

The `fake_psp` fixture (loaded for every test by `pytest_plugins` in conftest) starts it; point
the providers at it with `STRIPE_API_BASE` and `RAZORPAY_API_BASE` = `fake_psp.url`
(`fake_psp.env("stripe"|"razorpay")` builds the whole environment). Every request is
recorded with its decoded body in `fake_psp.requests`.

Stripe (form bodies, `a[b][c]=v`): POST /v1/payment_intents answers by token —
tok_chargeDeclined 402 card_declined, tok_cvcCheckFail 402 incorrect_cvc,
tok_threeDSecureRequired status requires_action, tok_processing status processing,
tok_server_error 500, tok_missing 400 resource_missing, anything else succeeded;
POST /v1/payment_intents/{id}/cancel; GET /v1/payment_intents/{id}. `Idempotency-Key`
replays the stored response (a different body under the same key is a 400
idempotency_error), as Stripe does, and that includes a stored 500.
`drop_responses = n` acts on the next n requests and hangs up without answering them.
Razorpay (JSON bodies): POST /v1/orders, GET /v1/orders/{id}, GET /v1/payments/{id},
POST /v1/payments/{id}/capture; payments are registered by tests with add_razorpay_payment;
`razorpay_server_errors = n` answers the next n Razorpay requests with a 500.
`hold = "GET /v1/payments/.*"` keeps matching requests waiting until `resume` is set.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shop.config.settings import Settings, load_settings

STRIPE_KEY = "sk_test_fake_123"
STRIPE_WEBHOOK_SECRET = "whsec_fake_456"
RAZORPAY_KEY_ID = "rzp_test_fake"
RAZORPAY_KEY_SECRET = "rzp_secret_fake_789"
RAZORPAY_WEBHOOK_SECRET = "rzp_whsec_fake_000"

_CARD_ERRORS = {
    "tok_chargeDeclined": ("card_declined", "generic_decline", None, "Your card was declined."),
    "tok_cvcCheckFail": ("incorrect_cvc", None, "cvc", "Your card's security code is incorrect."),
    "tok_insufficientFunds": (
        "card_declined",
        "insufficient_funds",
        None,
        "Your card has insufficient funds.",
    ),
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakePSP:
    """The server's state; tests read `requests` and seed Razorpay payments."""

    url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotent: dict[str, tuple[Any, int, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Handle this many next requests, then hang up without answering (a lost response).
    drop_responses: int = 0
    # Answer this many next Razorpay requests with a 500 SERVER_ERROR (acting on nothing).
    razorpay_server_errors: int = 0
    # While set, requests whose "METHOD path" fully matches `hold` wait for `resume` before
    # they are handled (a provider call still in flight); `held` says one is waiting.
    hold: str | None = None
    held: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    # Keys the provider no longer accepts (rolled or deleted): requests with them get a 401.
    revoked_keys: set[str] = field(default_factory=set)

    def sent(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """Return the recorded requests whose method matches and path fully matches the regex."""
        return [
            r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)
        ]

    def env(self, provider: str) -> dict[str, str]:
        """Return the environment that points `provider` at this server with test secrets."""
        if provider == "stripe":
            return {
                "STRIPE_API_BASE": self.url,
                "STRIPE_SECRET_KEY": STRIPE_KEY,
                "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            }
        return {
            "RAZORPAY_API_BASE": self.url,
            "RAZORPAY_KEY_ID": RAZORPAY_KEY_ID,
            "RAZORPAY_KEY_SECRET": RAZORPAY_KEY_SECRET,
            "RAZORPAY_WEBHOOK_SECRET": RAZORPAY_WEBHOOK_SECRET,
        }

    def add_razorpay_payment(
        self,
        order_id: str,
        amount: int,
        currency: str = "INR",
        status: str = "authorized",
        payment_id: str | None = None,
        error_code: str | None = None,
        error_description: str | None = None,
        error_reason: str | None = None,
    ) -> str:
        """Register a Razorpay payment (as if the buyer paid in Checkout); return its id."""
        payment_id = payment_id or f"pay_{secrets.token_hex(7)}"
        notes = self.razorpay_orders.get(order_id, {}).get("notes", {})
        self.razorpay_payments[payment_id] = {
            "id": payment_id,
            "entity": "payment",
            "amount": amount,
            "currency": currency,
            "status": status,
            "order_id": order_id,
            "method": "card",
            "captured": status == "captured",
            "notes": notes,
            "error_code": error_code,
            "error_description": error_description,
            "error_reason": error_reason,
            "created_at": 1_700_000_000,
        }
        return payment_id

    # --- Stripe -------------------------------------------------------------------------

    def stripe(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/v1/balance":  # `check --online`: a harmless read
            return 200, {
                "object": "balance",
                "livemode": False,
                "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
            }
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(body)
        match = re.fullmatch(r"/v1/payment_intents/(pi_\w+)(/cancel)?", path)
        if match and match[1] in self.payment_intents:
            intent = self.payment_intents[match[1]]
            if match[2] and method == "POST":
                intent.update(
                    status="canceled",
                    next_action=None,
                    cancellation_reason=body.get("cancellation_reason"),
                )
            return 200, intent
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"No such resource: {path}",
            }
        }

    def _create_intent(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pmd = body.get("payment_method_data") or {}
        token = (
            pmd.get("shared_payment_granted_token")
            or (pmd.get("card") or {}).get("token")
            or body.get("payment_method")
            or ""
        )
        if token == "tok_server_error":
            return 500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        if token == "tok_missing":
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "payment_method_data[card][token]",
                    "message": f"No such token: '{token}'",
                }
            }
        intent_id = f"pi_{secrets.token_hex(8)}"
        status = {
            "tok_threeDSecureRequired": "requires_action",
            "tok_processing": "processing",
        }.get(token, "succeeded")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(body.get("amount", 0)),
            "currency": body.get("currency"),
            "metadata": body.get("metadata") or {},
            "status": status,
            "payment_method_types": body.get("payment_method_types"),
            "latest_charge": f"ch_{secrets.token_hex(8)}" if status == "succeeded" else None,
            "next_action": {"type": "use_stripe_sdk"} if status == "requires_action" else None,
            "livemode": False,
        }
        if token in _CARD_ERRORS:
            code, decline_code, param, message = _CARD_ERRORS[token]
            intent.update(status="requires_payment_method", latest_charge=None)
            self.payment_intents[intent_id] = intent
            error = {
                "type": "card_error",
                "code": code,
                "message": message,
                "param": param,
                "decline_code": decline_code,
                "payment_intent": intent,
            }
            return 402, {"error": {k: v for k, v in error.items() if v is not None}}
        self.payment_intents[intent_id] = intent
        return 200, intent

    # --- Razorpay -----------------------------------------------------------------------

    def razorpay(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/v1/orders":  # `check --online`: a harmless read
            newest = sorted(self.razorpay_orders.values(), key=lambda o: o["created_at"])[-1:]
            return 200, {"entity": "collection", "count": len(newest), "items": newest}
        if method == "POST" and path == "/v1/orders":
            order_id = f"order_{secrets.token_hex(7)}"
            self.razorpay_orders[order_id] = {
                "id": order_id,
                "entity": "order",
                "amount": body["amount"],
                "amount_paid": 0,
                "amount_due": body["amount"],
                "currency": body["currency"],
                "receipt": body.get("receipt"),
                "status": "created",
                "notes": body.get("notes") or {},
                "attempts": 0,
                "created_at": 1_700_000_000,
            }
            return 200, self.razorpay_orders[order_id]
        match = re.fullmatch(r"/v1/(orders|payments)/(\w+)(/capture)?", path)
        store = {"orders": self.razorpay_orders, "payments": self.razorpay_payments}
        entity = store[match[1]].get(match[2]) if match else None
        if entity is None:
            return 400, _razorpay_error("The id provided does not exist")
        if match and match[3] and method == "POST":
            if entity["status"] != "authorized":
                return 400, _razorpay_error(
                    "This payment has already been captured"
                    if entity["status"] == "captured"
                    else "Only payments which have been authorized and not "
                    "yet captured can be captured"
                )
            if (
                int(body.get("amount", -1)) != entity["amount"]
                or body.get("currency") != entity["currency"]
            ):
                return 400, _razorpay_error("Capture amount must be equal to the amount authorized")
            entity.update(status="captured", captured=True)
        return 200, entity


def _razorpay_error(description: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "BAD_REQUEST_ERROR",
            "description": description,
            "source": "business",
            "reason": "input_validation_failed",
        }
    }


def decode_form(raw: str) -> dict[str, Any]:
    """Decode Stripe's nested form encoding (`a[b][0]=v`) into dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


class _Handler(BaseHTTPRequestHandler):
    fake: FakePSP

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _serve(self) -> None:
        fake = self.server.fake  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        is_json = "json" in (self.headers.get("Content-Type") or "")
        body = (json.loads(raw) if raw else {}) if is_json else decode_form(raw)
        headers = dict(self.headers.items())
        if fake.hold and re.fullmatch(fake.hold, f"{self.command} {path}"):
            fake.held.set()
            fake.resume.wait(10)
        with fake.lock:
            fake.requests.append(RecordedRequest(self.command, path, headers, body))
            if not self.headers.get("Authorization"):
                status, answer = (
                    401,
                    {"error": {"type": "invalid_request_error", "message": "No API key provided."}},
                )
            elif self._revoked(fake):
                status, answer = (
                    (
                        401,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "message": "Invalid API Key provided: sk_****",
                            }
                        },
                    )
                    if self.headers.get("Stripe-Version")
                    else (
                        401,
                        {
                            "error": {
                                "code": "BAD_REQUEST_ERROR",
                                "description": "Authentication failed",
                            }
                        },
                    )
                )
            elif self.headers.get("Stripe-Version"):  # the stripe library always sends it
                status, answer = self._stripe(fake, path, body)
            elif fake.razorpay_server_errors > 0:
                fake.razorpay_server_errors -= 1
                status, answer = (
                    500,
                    {
                        "error": {
                            "code": "SERVER_ERROR",
                            "description": "The server encountered an "
                            "error. The incident has been reported to admins.",
                        }
                    },
                )
            else:
                status, answer = fake.razorpay(self.command, path, body)
            drop = fake.drop_responses > 0
            if drop:
                fake.drop_responses -= 1
        if drop:  # the request was acted on; the caller never hears how
            self.close_connection = True
            return
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{secrets.token_hex(6)}")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller died waiting (a crash test)
            self.close_connection = True

    def _revoked(self, fake: FakePSP) -> bool:
        kind, _, credential = (self.headers.get("Authorization") or "").partition(" ")
        if kind == "Basic":
            credential = base64.b64decode(credential).decode(errors="replace").partition(":")[0]
        return credential in fake.revoked_keys

    def _stripe(self, fake: FakePSP, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        key = self.headers.get("Idempotency-Key")
        if self.command != "POST" or not key:
            return fake.stripe(self.command, path, body)
        if key in fake._idempotent:
            first_body, status, answer = fake._idempotent[key]
            if first_body != (path, body):
                return 400, {
                    "error": {
                        "type": "idempotency_error",
                        "message": (
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with."
                        ),
                    }
                }
            return status, answer
        status, answer = fake.stripe(self.command, path, body)
        fake._idempotent[key] = ((path, body), status, answer)
        return status, answer

    do_GET = do_POST = do_DELETE = do_PATCH = _serve


def start_fake_psp() -> tuple[FakePSP, ThreadingHTTPServer]:
    """Start the fake on 127.0.0.1 with a free port; stop it with server.shutdown()."""
    fake = FakePSP()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-psp", daemon=True
    ).start()
    return fake, server


def provider_settings(
    fake: FakePSP, provider: str, tmp_path: Path, config: dict[str, Any] | None = None, **env: str
) -> Settings:
    """Return Settings for `provider` pointed at `fake`, from a config.json written in tmp_path."""
    path = tmp_path / "config.json"
    currency = "inr" if provider == "razorpay" else "usd"
    path.write_text(
        json.dumps(
            {
                "storeName": "Fake PSP Store",
                "currency": currency,
                "paymentProvider": provider,
                **(config or {}),
            }
        )
    )
    return load_settings(
        env={
            "SHOP_CONFIG": str(path),
            "SHOP_API_KEYS": "agent:secret-token",
            **fake.env(provider),
            **env,
        }
    )


@pytest.fixture(name="fake_psp")
def fake_psp_fixture() -> Iterator[FakePSP]:
    """Run a fresh fake provider server for one test."""
    fake, server = start_fake_psp()
    try:
        yield fake
    finally:
        fake.resume.set()  # never leave a held request behind
        server.shutdown()
        server.server_close()
