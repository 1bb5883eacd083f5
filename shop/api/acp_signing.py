"""Optional verification of the ACP request `Signature` and `Timestamp` headers.

Active only when ACP_SIGNING_SECRET is set. The ACP RFC leaves the algorithm to be agreed
out of band; we publish this one (README "Signed ACP requests"):

    Timestamp: RFC 3339 date-time (or Unix seconds), within 300 s of the store's clock
    Signature: base64(HMAC-SHA256(ACP_SIGNING_SECRET, canonical JSON of the body))

For interoperability the HMAC may also be hex or base64url, and may cover the raw body bytes
or "<Timestamp>.<body>" (the Stripe-style form that also binds the timestamp). Every
candidate is compared in constant time. Requests with a body must be signed; a GET is
checked when it carries a Signature (its body is the empty string).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import datetime

from flask import Request

from shop import clock
from shop.api.fingerprint import canonical_json
from shop.errors import ShopError

TOLERANCE_SECONDS = 300


def _unauthorized(message: str) -> ShopError:
    return ShopError(401, "invalid_request", "invalid_signature", message)


def _timestamp_seconds(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _unauthorized(
            f"The Timestamp header '{text[:40]}' is not an RFC 3339 date-time; "
            "send e.g. Timestamp: 2026-04-17T12:00:00Z."
        ) from None
    if moment.tzinfo is None:
        raise _unauthorized("The Timestamp header has no time zone; end it with Z or +00:00.")
    return int(moment.timestamp())


def _messages(raw: bytes, timestamp: str) -> list[bytes]:
    bodies = [raw]
    if raw.strip():
        # Not JSON: the parser answers 400 later; only the raw bytes can match.
        with contextlib.suppress(ValueError):
            bodies.insert(0, canonical_json(json.loads(raw)))
    else:
        bodies = [b""]
    return bodies + [timestamp.encode() + b"." + body for body in bodies]


def _encodings(digest: bytes) -> list[str]:
    return [
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
        digest.hex(),
    ]


def verify_request(request: Request, secret: str) -> None:
    """Raise a 401 ShopError unless the request is signed with `secret` and recent."""
    signature = (request.headers.get("Signature") or "").strip()
    timestamp = (request.headers.get("Timestamp") or "").strip()
    raw = request.get_data(cache=True)
    if not signature:
        if request.method == "GET":
            return
        raise _unauthorized(
            "This store verifies request signatures (ACP_SIGNING_SECRET is "
            "set): send a Signature header with the HMAC-SHA256 of the body "
            "and a Timestamp header."
        )
    if not timestamp:
        raise _unauthorized("The Signature header needs a Timestamp header (RFC 3339) beside it.")
    skew = abs(clock.epoch() - _timestamp_seconds(timestamp))
    if skew > TOLERANCE_SECONDS:
        raise _unauthorized(
            f"The Timestamp header is {skew} s away from the store's clock; "
            f"sign with the current time (tolerance {TOLERANCE_SECONDS} s)."
        )
    given = signature.removeprefix("sha256=").removeprefix("v1=").strip()
    matched = False
    for message in _messages(raw, timestamp):
        digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        for candidate in _encodings(digest):
            matched |= hmac.compare_digest(candidate.encode(), given.encode())
    if not matched:
        raise _unauthorized(
            "The Signature header does not match the body: sign the exact "
            "body with ACP_SIGNING_SECRET (base64 HMAC-SHA256 of its canonical "
            "JSON)."
        )
