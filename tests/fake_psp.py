"""A fake Stripe + Razorpay API on loopback, as strict as the real ones, for the real libraries.

The `fake_psp` fixture (loaded for every test by `pytest_plugins` in conftest) starts it; point
the providers at it with `STRIPE_API_BASE` and `RAZORPAY_API_BASE` = `fake_psp.url`
(`fake_psp.env("stripe"|"razorpay")` builds the whole environment). Every request is
recorded with its decoded body (query for GETs) in `fake_psp.requests`.

Stripe (form bodies, `a[b][c]=v`), as Stripe answers (tests/fake_stripe_rules.py):
- every request is checked against the pinned stripe library's typed params for its endpoint
  and the changelog's changes for the `Stripe-Version` it carries (400 parameter_unknown,
  payment_method_types_no_longer_supported, parameters_exclusive …);
- `Authorization: Bearer` must be a known key (401); a restricted key (`RESTRICTED_KEY`: no
  refunds) answers 403 on what it may not do;
- `Idempotency-Key` replays the stored answer (a different body: 400 idempotency_error), but
  a validation error is not stored, and the same key while the first is running is 409
  idempotency_key_in_use;
- tokens and PaymentMethods are Stripe's documented test cards (STRIPE_TEST_CARDS:
  tok_visa, pm_card_visa, tok_chargeDeclinedInsufficientFunds, tok_threeDSecure2Required …);
  anything else is 400 resource_missing. Shared Payment Tokens exist once granted with
  `grant_spt(token, card)` (Stripe's test helper does this for a real account);
- cancel refuses a succeeded or canceled PaymentIntent; refunds need a succeeded one;
  `GET /v1/payment_intents/search` finds by metadata['checkout_session_id'].
`next_outcomes` scripts what test mode cannot produce on demand: the next confirmed
PaymentIntents answer "processing" or "server_error" (a 500 Stripe stores under the key).
`drop_responses = n` acts on the next n requests and hangs up without answering them.

Razorpay (JSON bodies), errors in Razorpay's shape `{"error": {"code": "BAD_REQUEST_ERROR",
"description", "source", "step", "reason", "metadata"}}`, HTTP Basic key id/secret checked (401
"Authentication failed"): POST /v1/orders, GET /v1/orders/{id}, GET /v1/payments/{id},
POST /v1/payments/{id}/capture, POST /v1/payments/{id}/refund; payments are registered by tests
with add_razorpay_payment; `razorpay_server_errors = n` answers the next n Razorpay requests with
a 500. `hold = "GET /v1/payments/.*"` keeps matching requests waiting until `resume` is set.
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
from tests import fake_stripe_rules as rules
from tests.fake_stripe_rules import StripeRefusal, documented_card, invalid

STRIPE_KEY = "sk_test_fake_123"
RESTRICTED_KEY = "rk_test_fake_no_refunds"  # a restricted key without the Refunds permission
STRIPE_WEBHOOK_SECRET = "whsec_fake_456"
RAZORPAY_KEY_ID = "rzp_test_fake"
RAZORPAY_KEY_SECRET = "rzp_secret_fake_789"
RAZORPAY_WEBHOOK_SECRET = "rzp_whsec_fake_000"
_STRIPE_KEYS: dict[str, frozenset[str] | None] = {
    STRIPE_KEY: None,  # every permission
    RESTRICTED_KEY: frozenset({"payment_intents", "payment_methods"}),
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
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    spt_grants: dict[str, str] = field(default_factory=dict)  # spt_… -> test card name
    razorpay_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotent: dict[str, tuple[Any, int, dict[str, Any]]] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # What the next confirmed PaymentIntents do instead of their card: "processing", "server_error".
    next_outcomes: list[str] = field(default_factory=list)
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

    def grant_spt(self, token: str, card: str = "visa") -> str:
        """Grant a Shared Payment Token backed by one of Stripe's test cards; return it."""
        if card not in rules.STRIPE_TEST_CARDS:
            raise ValueError(f"{card!r} is not one of Stripe's documented test cards")
        self.spt_grants[token] = card
        return token

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
            "amount_refunded": 0,
            "notes": notes,
            "error_code": error_code,
            "error_description": error_description,
            "error_reason": error_reason,
            "created_at": 1_700_000_000,
        }
        return payment_id

    # --- Stripe -------------------------------------------------------------------------

    def check_stripe(self, method: str, path: str, body: dict[str, Any], version: str) -> None:
        """Refuse a request Stripe would refuse before acting on it (never stored)."""
        for verb, pattern, params in rules.ENDPOINTS:
            if verb == method and re.fullmatch(pattern, path):
                if params is rules.PaymentIntentCreateParams:
                    body = rules.check_payment_intent_version(body, version)
                rules.check_params(params, body)
                return
        raise StripeRefusal(
            404,
            {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"Unrecognized request URL ({method}: {path}).",
            },
        )

    def stripe(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Act on a valid Stripe request; StripeRefusal for what fails while acting."""
        if method == "GET" and path == "/v1/balance":  # `check --online`: a harmless read
            return 200, {
                "object": "balance",
                "livemode": False,
                "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
            }
        if method == "POST" and path == "/v1/payment_methods":
            return 200, self._create_payment_method(body)
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(body)
        if method == "POST" and path == "/v1/refunds":
            return 200, self._refund(body)
        if path == "/v1/payment_intents/search":
            return 200, self._search(body.get("query", ""))
        match = re.fullmatch(r"/v1/payment_intents/(pi_\w+)(/cancel)?", path)
        intent = self.payment_intents.get(match[1]) if match else None
        if intent is None:
            raise _missing("payment_intent", match[1] if match else path, None)
        if match and match[2]:
            if intent["status"] in ("succeeded", "canceled"):
                raise invalid(
                    "payment_intent_unexpected_state",
                    f"You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}. Only a PaymentIntent with one of the following "
                    "statuses may be canceled: requires_payment_method, requires_capture, "
                    "requires_confirmation, requires_action, processing.",
                )
            intent.update(
                status="canceled",
                next_action=None,
                cancellation_reason=body.get("cancellation_reason"),
            )
        return 200, intent

    def _create_payment_method(self, body: dict[str, Any]) -> dict[str, Any]:
        token = (body.get("card") or {}).get("token", "")
        card = documented_card(token)
        if body.get("type") != "card" or card is None:
            raise _missing("token", token, "card[token]")
        pm_id = f"pm_{secrets.token_hex(12)}"
        self.payment_methods[pm_id] = {
            "id": pm_id,
            "object": "payment_method",
            "type": "card",
            "card": {"brand": card.brand, "last4": "4242"},
            "livemode": False,
            "_card": token.removeprefix("tok_"),
        }
        return {k: v for k, v in self.payment_methods[pm_id].items() if not k.startswith("_")}

    def _card_for(self, body: dict[str, Any]) -> tuple[rules.TestCard, str]:
        spt = (body.get("payment_method_data") or {}).get("shared_payment_granted_token")
        if spt:
            if spt not in self.spt_grants:
                raise _missing(
                    "shared_payment_granted_token",
                    spt,
                    "payment_method_data[shared_payment_granted_token]",
                )
            return rules.STRIPE_TEST_CARDS[self.spt_grants[spt]], f"pm_{secrets.token_hex(12)}"
        pm = body.get("payment_method") or ""
        if pm in self.payment_methods:
            return rules.STRIPE_TEST_CARDS[self.payment_methods[pm]["_card"]], pm
        card = documented_card(pm) if pm.startswith("pm_card_") else None
        if card is None:
            raise _missing("payment_method", pm, "payment_method")
        return card, pm

    def _create_intent(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        card, pm_id = self._card_for(body)
        intent_id = f"pi_{secrets.token_hex(8)}"
        three_ds = ((body.get("payment_method_options") or {}).get("card") or {}).get(
            "three_d_secure"
        )
        status = {"requires_action": "requires_action", "card_error": "requires_payment_method"}
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(body["amount"]),
            "amount_received": 0,
            "currency": body["currency"],
            "metadata": body.get("metadata") or {},
            "status": "succeeded" if three_ds else status.get(card.outcome, "succeeded"),
            "payment_method": pm_id,
            "payment_method_types": ["card"],
            "latest_charge": None,
            "last_payment_error": None,
            "next_action": None,
            "livemode": False,
        }
        self.payment_intents[intent_id] = intent
        scripted = self.next_outcomes.pop(0) if self.next_outcomes else None
        if scripted == "server_error":  # Stripe failed before creating anything
            del self.payment_intents[intent_id]
            return 500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        if scripted == "processing":
            intent["status"] = "processing"
        elif intent["status"] == "requires_action":
            intent["next_action"] = {"type": "use_stripe_sdk"}
        elif intent["status"] == "requires_payment_method":
            error = {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "message": card.message or "Your card was declined.",
                "param": card.param,
                "payment_method": {"id": pm_id},
            }
            error = {k: v for k, v in error.items() if v is not None}
            intent["last_payment_error"] = error
            return 402, {"error": {**error, "payment_intent": intent}}
        if intent["status"] == "succeeded":
            intent.update(amount_received=intent["amount"], latest_charge=_id("ch"))
        if "payment_method" in (body.get("expand") or []):
            return 200, {**intent, "payment_method": _payment_method(pm_id, card)}
        return 200, intent

    def _refund(self, body: dict[str, Any]) -> dict[str, Any]:
        intent = self.payment_intents.get(body.get("payment_intent") or "")
        if intent is None:
            raise _missing("payment_intent", body.get("payment_intent"), "payment_intent")
        refunded = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        amount = int(body.get("amount") or intent["amount_received"] - refunded)
        if intent["status"] != "succeeded" or amount + refunded > intent["amount_received"]:
            raise invalid(
                "charge_already_refunded" if refunded else "payment_intent_unexpected_state",
                f"PaymentIntent {intent['id']} cannot be refunded for {amount}.",
                "payment_intent",
            )
        refund = {
            "id": _id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "reason": body.get("reason"),
            "metadata": body.get("metadata") or {},
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return refund

    def _search(self, query: str) -> dict[str, Any]:
        match = re.fullmatch(r"metadata\['(\w+)'\]:'([^']*)'", query.strip())
        if not match:
            raise invalid(None, f"Invalid search query: {query}", "query")
        data = [
            intent
            for intent in self.payment_intents.values()
            if intent["metadata"].get(match[1]) == match[2]
        ]
        return {
            "object": "search_result",
            "data": data,
            "has_more": False,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }

    # --- Razorpay -----------------------------------------------------------------------

    def razorpay(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/v1/orders":  # `check --online`: a harmless read
            newest = sorted(self.razorpay_orders.values(), key=lambda o: o["created_at"])[-1:]
            return 200, {"entity": "collection", "count": len(newest), "items": newest}
        if method == "POST" and path == "/v1/orders":
            if not isinstance(body.get("amount"), int) or body["amount"] < 100:
                return 400, _razorpay_error(
                    "The amount must be atleast INR 1.00", field_name="amount"
                )
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
        match = re.fullmatch(r"/v1/(orders|payments)/(\w+)(/capture|/refund)?", path)
        if not match:
            return 404, _razorpay_error("The requested URL was not found on the server.")
        store = {"orders": self.razorpay_orders, "payments": self.razorpay_payments}
        entity = store[match[1]].get(match[2])
        if entity is None:
            return 400, _razorpay_error("The id provided does not exist")
        if match[3] == "/capture" and method == "POST":
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
        if match[3] == "/refund" and method == "POST":
            return self._razorpay_refund(entity, body)
        return 200, entity

    def _razorpay_refund(
        self, payment: dict[str, Any], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        amount = int(body.get("amount") or payment["amount"] - payment["amount_refunded"])
        if payment["status"] != "captured":
            return 400, _razorpay_error("The payment has not been captured")
        if amount + payment["amount_refunded"] > payment["amount"]:
            return 400, _razorpay_error("The payment has been fully refunded already")
        payment["amount_refunded"] += amount
        refund = {
            "id": f"rfnd_{secrets.token_hex(7)}",
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": body.get("notes") or {},
            "status": "processed",
        }
        self.razorpay_refunds[refund["id"]] = refund
        return 200, refund


def _payment_method(pm_id: str, card: rules.TestCard) -> dict[str, Any]:
    return {
        "id": pm_id,
        "object": "payment_method",
        "type": "card",
        "card": {"brand": card.brand, "last4": "4242"},
    }


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _missing(kind: str, value: Any, param: str | None) -> StripeRefusal:
    error = {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": f"No such {kind}: '{value}'",
    }
    if param:
        error["param"] = param
    return StripeRefusal(400 if param else 404, error)


def _razorpay_error(description: str, field_name: str | None = None) -> dict[str, Any]:
    error = {
        "code": "BAD_REQUEST_ERROR",
        "description": description,
        "source": "business",
        "step": "payment_initiation",
        "reason": "input_validation_failed",
        "metadata": {},
    }
    if field_name:
        error["field"] = field_name
    return {"error": error}


_RAZORPAY_AUTH_FAILED = {
    "error": {
        "code": "BAD_REQUEST_ERROR",
        "description": "Authentication failed",
        "source": "NA",
        "step": "NA",
        "reason": "NA",
        "metadata": {},
    }
}
_RAZORPAY_SERVER_ERROR = {
    "error": {
        "code": "SERVER_ERROR",
        "description": "The server encountered an error. The incident has been reported to admins.",
        "source": "NA",
        "step": "NA",
        "reason": "NA",
        "metadata": {},
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
    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _serve(self) -> None:
        fake: FakePSP = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        path = parts.path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        is_json = "json" in (self.headers.get("Content-Type") or "")
        if self.command == "GET" and not raw:
            raw = parts.query
        body = (json.loads(raw) if raw else {}) if is_json else decode_form(raw)
        headers = dict(self.headers.items())
        with fake.lock:
            fake.requests.append(RecordedRequest(self.command, path, headers, body))
        if self.headers.get("Stripe-Version"):  # the stripe library always sends it
            status, answer = self._stripe(fake, path, body)
        else:
            status, answer = self._razorpay(fake, path, body)
        with fake.lock:
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

    def _wait_if_held(self, fake: FakePSP, path: str) -> None:
        if fake.hold and re.fullmatch(fake.hold, f"{self.command} {path}"):
            fake.held.set()
            fake.resume.wait(10)

    def _revoked(self, fake: FakePSP) -> bool:
        kind, _, credential = (self.headers.get("Authorization") or "").partition(" ")
        if kind == "Basic":
            credential = base64.b64decode(credential).decode(errors="replace").partition(":")[0]
        return credential in fake.revoked_keys

    def _razorpay(self, fake: FakePSP, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{RAZORPAY_KEY_ID}:{RAZORPAY_KEY_SECRET}".encode()).decode()
        self._wait_if_held(fake, path)
        with fake.lock:
            if self.headers.get("Authorization") != f"Basic {expected}" or self._revoked(fake):
                return 401, _RAZORPAY_AUTH_FAILED
            if fake.razorpay_server_errors > 0:
                fake.razorpay_server_errors -= 1
                return 500, _RAZORPAY_SERVER_ERROR
            return fake.razorpay(self.command, path, body)

    def _stripe(self, fake: FakePSP, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        auth = self.headers.get("Authorization") or ""
        key = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or key not in _STRIPE_KEYS or self._revoked(fake):
            shown = f"{key[:8]}****{key[-3:]}" if len(key) > 12 else "****"
            return 401, {
                "error": {
                    "type": "invalid_request_error",
                    "message": f"Invalid API Key provided: {shown}",
                }
            }
        allowed = _STRIPE_KEYS[key]
        resource = path.split("/")[2] if path.count("/") >= 2 else ""
        if allowed is not None and resource not in allowed:
            return 403, {
                "error": {
                    "type": "invalid_request_error",
                    "message": f"The provided key '{key[:8]}****{key[-3:]}' does not have the "
                    f"required permissions for this endpoint on account 'acct_fake'. Having the "
                    f"'rak_{resource.rstrip('s')}_write' permission would allow this request to "
                    "continue.",
                }
            }
        try:
            fake.check_stripe(self.command, path, body, self.headers["Stripe-Version"])
        except StripeRefusal as refusal:  # validation: Stripe stores no idempotent result
            return refusal.status, {"error": refusal.error}
        idem = self.headers.get("Idempotency-Key") if self.command == "POST" else None
        if idem:
            with fake.lock:
                if idem in fake._in_flight:
                    return 409, {
                        "error": {
                            "type": "idempotency_error",
                            "code": "idempotency_key_in_use",
                            "message": "There is currently another in-progress request using "
                            "this Idempotent Key (that probably means you submitted twice, and "
                            "the other request is still going through): "
                            f"{idem}. Please try again later.",
                        }
                    }
                if idem in fake._idempotent:
                    first, status, answer = fake._idempotent[idem]
                    if first != (path, body):
                        return 400, {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with "
                                "the same parameters they were first used with. Try using a key "
                                "other than '" + idem + "' if you meant to execute a different "
                                "request.",
                            }
                        }
                    return status, answer
                fake._in_flight.add(idem)
        try:
            self._wait_if_held(fake, path)
            with fake.lock:
                try:
                    status, answer = fake.stripe(self.command, path, body)
                except StripeRefusal as refusal:
                    status, answer = refusal.status, {"error": refusal.error}
                if idem:
                    fake._idempotent[idem] = ((path, body), status, answer)
            return status, answer
        finally:
            if idem:
                with fake.lock:
                    fake._in_flight.discard(idem)

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
