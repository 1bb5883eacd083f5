"""ACP request signatures (Signature + Timestamp) when ACP_SIGNING_SECRET is set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import API_VERSION, assert_acp, cart

SECRET = "acp-signing-secret"


def _now_rfc3339(offset: int = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _sign(message: bytes, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


@pytest.fixture
def signed_client(make_app):
    return make_app(env={"ACP_SIGNING_SECRET": SECRET}).test_client()


def _post(client, raw: bytes, signature: str | None, timestamp: str | None):
    headers = {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": str(uuid.uuid4()),
    }
    if signature is not None:
        headers["Signature"] = signature
    if timestamp is not None:
        headers["Timestamp"] = timestamp
    return client.post(
        "/checkout_sessions", data=raw, content_type="application/json", headers=headers
    )


def _timestamped(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode() + b"." + body


def test_canonical_json_base64_signature_is_accepted(signed_client):
    body = cart(("widget", 1))
    raw = json.dumps(body, indent=2).encode()  # the bytes differ from the canonical form
    timestamp = _now_rfc3339()
    signature = base64.b64encode(_sign(_timestamped(timestamp, _canonical(body)))).decode()
    response = _post(signed_client, raw, signature, timestamp)
    assert response.status_code == 201, response.get_json()
    assert_acp(response.get_json(), "CheckoutSession")


@pytest.mark.parametrize("form", ["hex-raw", "base64url-raw", "unix-timestamp"])
def test_other_documented_forms_are_accepted(signed_client, form):
    body = cart(("widget", 1))
    raw = json.dumps(body).encode()
    timestamp = _now_rfc3339()
    if form == "hex-raw":
        signature = _sign(_timestamped(timestamp, raw)).hex()
    elif form == "base64url-raw":
        signature = base64.urlsafe_b64encode(_sign(_timestamped(timestamp, raw))).decode()
    else:
        timestamp = str(int(datetime.now(UTC).timestamp()))
        signature = base64.b64encode(_sign(_timestamped(timestamp, _canonical(body)))).decode()
    assert _post(signed_client, raw, signature, timestamp).status_code == 201


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "send a Signature header"),
        ("no-timestamp", "needs a Timestamp header"),
        ("stale", "away from the store's clock"),
        ("not-a-date", "not an RFC 3339 date-time"),
        ("tampered", "does not match"),
        ("wrong-secret", "does not match"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(signed_client, case, needle):
    body = cart(("widget", 1))
    raw = json.dumps(body).encode()
    timestamp = _now_rfc3339()
    good = base64.b64encode(_sign(_timestamped(timestamp, _canonical(body)))).decode()
    signature = good
    if case == "missing":
        signature = None
    elif case == "no-timestamp":
        timestamp = None
    elif case == "stale":
        timestamp = _now_rfc3339(-3600)
    elif case == "not-a-date":
        timestamp = "yesterday"
    elif case == "tampered":
        raw = json.dumps(cart(("widget", 9))).encode()
    else:
        signature = base64.b64encode(
            _sign(_timestamped(timestamp, _canonical(body)), "other")
        ).decode()
    response = _post(signed_client, raw, signature, timestamp)
    assert response.status_code == 401
    error = response.get_json()
    assert_acp(error, "Error")
    assert error["code"] == "invalid_signature"
    assert needle in error["message"]


def test_unsigned_get_is_allowed_and_signing_is_off_without_secret(signed_client, acp):
    body = cart(("widget", 1))
    timestamp = _now_rfc3339()
    created = _post(
        signed_client,
        json.dumps(body).encode(),
        base64.b64encode(_sign(_timestamped(timestamp, _canonical(body)))).decode(),
        timestamp,
    )
    session_id = created.get_json()["id"]
    read = signed_client.get(
        f"/checkout_sessions/{session_id}",
        headers={"Authorization": "Bearer demo", "API-Version": API_VERSION},
    )
    assert read.status_code == 200
    # The default app (no ACP_SIGNING_SECRET) takes unsigned requests.
    assert acp.create(cart(("widget", 1))).status_code == 201


def test_a_captured_signature_with_a_fresh_timestamp_is_refused(signed_client):
    body = cart(("widget", 1))
    raw = json.dumps(body).encode()
    an_hour_ago = _now_rfc3339(-3600)
    captured = base64.b64encode(_sign(_timestamped(an_hour_ago, _canonical(body)))).decode()
    replayed = _post(signed_client, raw, captured, _now_rfc3339())
    assert replayed.status_code == 401
    assert replayed.get_json()["code"] == "invalid_signature"


@pytest.mark.parametrize("encode", ["canonical", "raw"])
def test_a_body_only_signature_needs_the_documented_switch(make_app, encode):
    body = cart(("widget", 1))
    raw = json.dumps(body).encode()
    signature = base64.b64encode(_sign(_canonical(body) if encode == "canonical" else raw))
    default = make_app(env={"ACP_SIGNING_SECRET": SECRET}).test_client()
    refused = _post(default, raw, signature.decode(), _now_rfc3339())
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "invalid_signature"

    switched = make_app(
        config={"acp": {"bodyOnlySignatures": True}}, env={"ACP_SIGNING_SECRET": SECRET}
    ).test_client()
    # Replayable by design: the same signature with any fresh Timestamp passes.
    assert _post(switched, raw, signature.decode(), _now_rfc3339()).status_code == 201


def test_a_body_too_deep_is_a_400_before_the_signature(signed_client):
    raw = b"[" * 10_000 + b"]" * 10_000
    response = _post(signed_client, raw, "c2lnbmF0dXJl", _now_rfc3339())
    assert response.status_code == 400
    error = response.get_json()
    assert_acp(error, "Error")
    assert error["code"] == "invalid_json"


def test_a_deep_object_body_is_a_400_before_the_signature(signed_client):
    raw = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    response = _post(signed_client, raw, "anything", _now_rfc3339())
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_json"
