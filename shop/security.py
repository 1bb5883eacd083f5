"""Signatures and bearer tokens as pure functions: HMAC sign/verify and constant-time compares.

Every signer refuses an empty secret (a merchant who forgot to export one must not send
"signed" requests anyone can forge), and verification recomputes the signature with the
same function that signs, then compares with `hmac.compare_digest`. Each way a
timestamped header can fail has its own exception class and message, as in stripe-python.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300
_SCHEME = "v1"
_HEX_PREFIX = "hmac-sha256="


class SignatureError(ValueError):
    """A signature did not verify; the subclass and message say which check failed."""


class SignatureHeaderError(SignatureError):
    """The signature header is missing or cannot be parsed."""


class NoSignatureError(SignatureError):
    """The header parsed, but carries no signature in the expected scheme."""


class SignatureMismatchError(SignatureError):
    """No signature in the header matches the body and secret."""


class StaleTimestampError(SignatureError):
    """The signature is valid but its timestamp is outside the tolerance window."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _mac(secret: str | bytes, body: str | bytes) -> hmac.HMAC:
    if not secret or not _bytes(secret).strip():
        raise ValueError("refusing to sign or verify with an empty secret")
    return hmac.new(_bytes(secret), _bytes(body), hashlib.sha256)


def hmac_sha256_hex(secret: str | bytes, body: str | bytes) -> str:
    """Return the lower-case hex HMAC-SHA256 of body keyed with secret."""
    return _mac(secret, body).hexdigest()


def hmac_sha256_base64(secret: str | bytes, body: str | bytes) -> str:
    """Return the base64 HMAC-SHA256 of body keyed with secret (the order webhook Signature)."""
    return base64.b64encode(_mac(secret, body).digest()).decode("ascii")


def constant_time_equals(a: str | bytes | None, b: str | bytes | None) -> bool:
    """Compare two secrets or signatures without leaking where they differ."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(_bytes(a), _bytes(b))


def bearer_token(authorization_header: str | None) -> str | None:
    """Return the token of an 'Authorization: Bearer <token>' header, or None."""
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _signed_payload(timestamp: int, body: str | bytes) -> bytes:
    return str(timestamp).encode("ascii") + b"." + _bytes(body)


def sign_timestamped(secret: str | bytes, body: str | bytes, timestamp: int) -> str:
    """Return 't=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>' (Stripe and ACP style)."""
    signature = hmac_sha256_hex(secret, _signed_payload(int(timestamp), body))
    return f"t={int(timestamp)},{_SCHEME}={signature}"


def _parse_timestamped(header: str | None) -> tuple[int, list[str]]:
    if not header or not header.strip():
        raise SignatureHeaderError("the signature header is missing or empty")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureHeaderError(
                "the signature header is not a comma list of key=value pairs like t=…,v1=…"
            )
        if key == "t":
            if not value.strip().isdigit():
                raise SignatureHeaderError("the signature header's t= is not a unix timestamp")
            timestamp = int(value)
        elif key == _SCHEME:
            signatures.append(value.strip())
    if timestamp is None:
        raise SignatureHeaderError("the signature header has no t= timestamp")
    return timestamp, signatures


def verify_timestamped(
    secret: str | bytes,
    body: str | bytes,
    header: str | None,
    tolerance: int | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Verify a 't=…,v1=…' header against the raw body; return its timestamp or raise."""
    timestamp, signatures = _parse_timestamped(header)
    if not signatures:
        raise NoSignatureError(f"the signature header has no {_SCHEME}= signature")
    expected = hmac_sha256_hex(secret, _signed_payload(timestamp, body))
    # Check every candidate (secret rotation sends several) without stopping early.
    matches = [constant_time_equals(expected, s.lower()) for s in signatures]
    if not any(matches):
        raise SignatureMismatchError(
            "no signature matches the body: sign the exact raw bytes with the shared secret"
        )
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise StaleTimestampError(
                f"the signature timestamp {timestamp} is more than {tolerance} s away from now; "
                "check the sender's clock or re-sign the request"
            )
    return timestamp


def verify_hex(secret: str | bytes, body: str | bytes, signature: str | None) -> None:
    """Verify a hex HMAC-SHA256 of the raw body ('<hex>' or 'hmac-sha256=<hex>'); raise if not."""
    given = (signature or "").strip()
    if given.lower().startswith(_HEX_PREFIX):
        given = given[len(_HEX_PREFIX) :].strip()
    if not given:
        raise SignatureHeaderError("the signature header is missing or empty")
    if not constant_time_equals(hmac_sha256_hex(secret, body), given.lower()):
        raise SignatureMismatchError(
            "the signature does not match the body: sign the exact raw bytes with the shared secret"
        )
