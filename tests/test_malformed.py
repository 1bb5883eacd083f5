"""Malformed requests: each answers 4xx with a helpful message in the ACP Error shape, never 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import API_VERSION, assert_acp, cart

GOOD = {"Authorization": "Bearer demo", "API-Version": API_VERSION, "Idempotency-Key": "k"}


def _with(**changes: Any) -> dict[str, Any]:
    body = cart()
    body.update(changes)
    return body


def _headers(**changes: str | None) -> dict[str, str]:
    headers = dict(GOOD)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def _raw(extra: str) -> str:
    """A valid create body with one more member spliced in as raw JSON text."""
    return json.dumps(cart())[:-1] + ", " + extra + "}"


# Bodies Python's json module accepts but that are not JSON (or cannot be fingerprinted as
# RFC 8785 canonical JSON): each must be a 400 on every surface, never a 500.
UNREADABLE = [
    ("NaN", _raw('"note": NaN')),
    ("Infinity", _raw('"note": Infinity')),
    ("-Infinity", _raw('"note": -Infinity')),
    ("1e999 overflow", _raw('"note": 1e999')),
    ("1e999 quantity", '{"line_items": [{"id": "widget", "quantity": 1e999}]}'),
    ("huge integer literal", _raw('"note": ' + "9" * 5000)),
    ("nested 100000 deep", _raw('"note": ' + "[" * 100_000 + "]" * 100_000)),
    ("nested 40 deep", _raw('"note": ' + "[" * 40 + "]" * 40)),
    ("lone surrogate", _raw('"note": "\\ud800"')),
    ("lone surrogate key", _raw('"\\udfff": 1')),
    ("lone low surrogate in buyer", _raw('"buyer": {"email": "a@b.co", "first_name": "\\udc00x"}')),
]

CASES: list[tuple[str, str, str, Any, dict[str, str], int, str]] = [
    # (case id, method, path, body (str = raw), headers, status, code)
    ("bad json", "POST", "/checkout_sessions", "{not json", GOOD, 400, "invalid_json"),
    ("json array", "POST", "/checkout_sessions", "[1,2]", GOOD, 400, "invalid_json"),
    ("json string", "POST", "/checkout_sessions", '"hello"', GOOD, 400, "invalid_json"),
    ("not utf8", "POST", "/checkout_sessions", b"\xff\xfe{", GOOD, 400, "invalid_json"),
    (
        "no line_items",
        "POST",
        "/checkout_sessions",
        {"currency": "usd"},
        GOOD,
        400,
        "missing_line_items",
    ),
    (
        "empty line_items",
        "POST",
        "/checkout_sessions",
        _with(line_items=[]),
        GOOD,
        400,
        "missing_line_items",
    ),
    (
        "line_items object",
        "POST",
        "/checkout_sessions",
        _with(line_items={"id": "widget"}),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "line item string",
        "POST",
        "/checkout_sessions",
        _with(line_items=["widget"]),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "item id number",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": 7}]),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "item id missing",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"quantity": 1}]),
        GOOD,
        400,
        "missing_field",
    ),
    (
        "unknown item",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "unicorn"}]),
        GOOD,
        400,
        "invalid_item",
    ),
    (
        "zero quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": 0}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "negative quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": -3}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "huge quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": 10**30}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "fractional quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": 1.5}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "string quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": "2"}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "boolean quantity",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget", "quantity": True}]),
        GOOD,
        400,
        "invalid_quantity",
    ),
    (
        "wrong currency",
        "POST",
        "/checkout_sessions",
        _with(currency="eur"),
        GOOD,
        400,
        "unsupported_currency",
    ),
    (
        "currency number",
        "POST",
        "/checkout_sessions",
        _with(currency=840),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "buyer not object",
        "POST",
        "/checkout_sessions",
        _with(buyer="jane"),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "buyer bad email",
        "POST",
        "/checkout_sessions",
        _with(buyer={"email": "nope"}),
        GOOD,
        400,
        "invalid_email",
    ),
    (
        "address incomplete",
        "POST",
        "/checkout_sessions",
        _with(fulfillment_details={"address": {"name": "J", "city": "X"}}),
        GOOD,
        400,
        "invalid_address",
    ),
    (
        "coupons not list",
        "POST",
        "/checkout_sessions",
        _with(coupons="TEN"),
        GOOD,
        400,
        "invalid_type",
    ),
    (
        "too many lines",
        "POST",
        "/checkout_sessions",
        _with(line_items=[{"id": "widget"}] * 101),
        GOOD,
        400,
        "too_many_line_items",
    ),
    (
        "no auth",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(Authorization=None),
        401,
        "unauthorized",
    ),
    (
        "wrong auth",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(Authorization="Bearer nope"),
        401,
        "unauthorized",
    ),
    (
        "basic auth",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(Authorization="Basic ZGVtbw=="),
        401,
        "unauthorized",
    ),
    (
        "no api version",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(API_Version=None),
        400,
        "api_version_required",
    ),
    (
        "old api version",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(API_Version="2024-01-01"),
        400,
        "unsupported_api_version",
    ),
    (
        "no idempotency key",
        "POST",
        "/checkout_sessions",
        cart(),
        _headers(Idempotency_Key=None),
        400,
        "idempotency_key_required",
    ),
    (
        "oversized body",
        "POST",
        "/checkout_sessions",
        json.dumps(_with(order_notes="x" * (1024 * 1024 + 10))),
        GOOD,
        413,
        "request_too_large",
    ),
    ("odd path chars", "GET", "/checkout_sessions/%00%2F..%2Fetc", None, GOOD, 404, "not_found"),
    (
        "quote in path",
        "GET",
        "/checkout_sessions/cs_'%22%3Cx%3E",
        None,
        GOOD,
        404,
        "session_not_found",
    ),
    (
        "unicode path",
        "GET",
        "/checkout_sessions/cs_%F0%9F%92%A5",
        None,
        GOOD,
        404,
        "session_not_found",
    ),
    (
        "unknown session update",
        "POST",
        "/checkout_sessions/cs_missing",
        {},
        GOOD,
        404,
        "session_not_found",
    ),
    (
        "unknown session complete",
        "POST",
        "/checkout_sessions/cs_missing/complete",
        {"payment_data": {"token": "tok_visa"}},
        GOOD,
        404,
        "session_not_found",
    ),
    ("wrong method", "DELETE", "/checkout_sessions/cs_1", None, GOOD, 405, "http_error"),
    ("unknown route", "GET", "/checkout_session", None, GOOD, 404, "not_found"),
    *[
        (f"{name} (create)", "POST", "/checkout_sessions", body, GOOD, 400, "invalid_json")
        for name, body in UNREADABLE
    ],
    *[
        (f"{name} (short create)", "POST", "/acp/checkout/create", body, GOOD, 400, "invalid_json")
        for name, body in UNREADABLE[:3]
    ],
    (
        "NaN (update)",
        "POST",
        "/checkout_sessions/cs_missing",
        '{"coupons": [NaN]}',
        GOOD,
        400,
        "invalid_json",
    ),
    (
        "lone surrogate (complete)",
        "POST",
        "/checkout_sessions/cs_missing/complete",
        '{"payment_data": {"token": "\\ud800"}}',
        GOOD,
        400,
        "invalid_json",
    ),
    (
        "deep (cancel)",
        "POST",
        "/checkout_sessions/cs_missing/cancel",
        "[" * 50_000,
        GOOD,
        400,
        "invalid_json",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_malformed_request(client, method, path, body, headers, status, code):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    response = client.open(
        path, method=method, data=data, headers=headers, content_type="application/json"
    )
    assert response.status_code == status, response.get_data(as_text=True)
    payload = response.get_json()
    assert_acp(payload, "Error")
    if code != "http_error":
        assert payload["code"] == code
    assert len(payload["message"]) > 20  # a sentence, not a bare code


COMPLETE_CASES = [
    ("no payment_data", {}, "missing_payment_data"),
    ("payment_data string", {"payment_data": "tok_visa"}, "invalid_type"),
    ("empty token", {"payment_data": {"token": ""}}, "missing_field"),
    (
        "credential without token",
        {
            "payment_data": {
                "handler_id": "h",
                "instrument": {"type": "card", "credential": {"type": "spt"}},
            }
        },
        "missing_field",
    ),
    ("token number", {"payment_data": {"token": 4242}}, "invalid_type"),
]


@pytest.mark.parametrize(
    ("body", "code"), [c[1:] for c in COMPLETE_CASES], ids=[c[0] for c in COMPLETE_CASES]
)
def test_malformed_complete(acp, body, code):
    created = acp.create().get_json()
    response = acp.post(f"/checkout_sessions/{created['id']}/complete", body)
    assert response.status_code == 400
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == code


def test_version_error_lists_supported_versions(client):
    response = client.post(
        "/checkout_sessions", json=cart(), headers=_headers(API_Version="1999-01-01")
    )
    assert response.get_json()["supported_versions"] == [
        "2026-04-17",
        "2026-01-30",
        "2026-01-16",
        "2025-12-12",
        "2025-09-29",
    ]


@pytest.mark.parametrize("body", [b for _, b in UNREADABLE], ids=[n for n, _ in UNREADABLE])
def test_unreadable_body_is_refused_before_the_idempotency_claim(client, body):
    first = client.post(
        "/checkout_sessions",
        data=body,
        content_type="application/json",
        headers=_headers(Idempotency_Key="fix-and-retry"),
    )
    assert first.status_code == 400
    again = client.post(
        "/checkout_sessions",
        data=json.dumps(cart()),
        content_type="application/json",
        headers=_headers(Idempotency_Key="fix-and-retry"),
    )
    assert again.status_code == 201  # nothing was stored under the key: the fix goes through
    assert "Idempotent-Replayed" not in again.headers


@pytest.mark.parametrize("path", ["/api/account", "/api/cart", "/api/checkout"])
@pytest.mark.parametrize(("name", "body"), UNREADABLE, ids=[n for n, _ in UNREADABLE])
def test_unreadable_body_on_forter_surface(make_app, path, name, body):
    from tests.test_forter import HEADER, SECRET, sign

    app = make_app(
        config={"forter": {"bearer": True, "hmac": True}}, env={"FORTER_WEBHOOK_SECRET": SECRET}
    )
    event = {
        "/api/account": "account.lookup",
        "/api/cart": "cart.created",
        "/api/checkout": "order.created",
    }[path]
    raw = ('{"event": "' + event + '", "reference_id": "ref-1", ' + body[1:]).encode()
    response = app.test_client().post(
        path,
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {SECRET}", HEADER: sign(raw)},
    )
    answer = response.get_json()
    if path == "/api/account":  # non-fatal by contract: an unreadable lookup is not_found
        assert response.status_code == 200, response.get_data(as_text=True)
        assert answer["success"] is True
        assert answer["status"] == "not_found"
        return
    if name.startswith("1e999"):
        # Forter amounts are read as Decimal, where 1e999 is a finite (ignored) number:
        # whatever the answer, never a 5xx.
        assert response.status_code < 500, response.get_data(as_text=True)
        return
    assert response.status_code == 400, response.get_data(as_text=True)
    assert answer["success"] is False
    assert answer["error_code"] == "invalid_request"
    assert len(answer["error_message"]) > 20
