"""Optional verification of the ACP request `Signature` and `Timestamp` headers.

Active only when ACP_SIGNING_SECRET is set. The ACP RFC leaves the algorithm to be agreed
out of band; we publish this one (README "Signed ACP requests"):

    Timestamp: RFC 3339 date-time (or Unix seconds), within 300 s of the store's clock
    Signature: base64(HMAC-SHA256(ACP_SIGNING_SECRET, "<Timestamp>.<canonical JSON of the body>"))

The signed message binds the Timestamp, so a captured signature stops working once its
Timestamp is 300 s old. For interoperability the HMAC may also be hex or base64url, and may
cover "<Timestamp>.<raw body bytes>" instead of the canonical JSON. Every candidate is
compared in constant time. Requests with a body must be signed; a GET is checked when it
carries a Signature (its body is the empty string).

An HMAC over the body alone does not bind the time: anyone who captured one request could
send it again, with a fresh Timestamp, forever. It is accepted only when config.json says
`"acp": {"bodyOnlySignatures": true}` (for an agent platform that cannot sign the
timestamp), and the README says so.

The body is decoded (depth and all, shop/api/json_body.py) before the signature is checked:
a body too deep to canonicalize is a 400, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

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


def _messages(raw: bytes, body: Any, timestamp: str, body_only: bool) -> list[bytes]:
    """The byte strings a valid signature may cover, the timestamped forms first."""
    bodies = [canonical_json(body), raw] if raw.strip() else [b""]
    messages = [timestamp.encode() + b"." + text for text in bodies]
    return messages + bodies if body_only else messages


def _encodings(digest: bytes) -> list[str]:
    return [
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
        digest.hex(),
    ]


def verify_request(request: Request, secret: str, body: Any, *, body_only: bool = False) -> None:
    """Raise a 401 ShopError unless the request is signed with `secret` and recent.

    `body` is the request body already decoded strictly (so its depth is checked first);
    `body_only` also accepts an HMAC over the body alone (replayable: see the module doc).
    """
    signature = (request.headers.get("Signature") or "").strip()
    timestamp = (request.headers.get("Timestamp") or "").strip()
    raw = request.get_data(cache=True)
    if not signature:
        if request.method == "GET":
            return
        raise _unauthorized(
            "This store verifies request signatures (ACP_SIGNING_SECRET is "
            "set): send a Signature header with the HMAC-SHA256 of "
            '"<Timestamp>.<body>" and a Timestamp header.'
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
    for message in _messages(raw, body, timestamp, body_only):
        digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        for candidate in _encodings(digest):
            matched |= hmac.compare_digest(candidate.encode(), given.encode())
    if not matched:
        raise _unauthorized(
            "The Signature header does not match: sign "
            '"<Timestamp header>.<canonical JSON of the body>" with ACP_SIGNING_SECRET '
            "(base64 HMAC-SHA256), using the same Timestamp you send."
        )
