"""shop.security: HMAC signers and verifiers, broken one part at a time (as stripe-python tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shop.security import (
    NoSignatureError,
    SignatureError,
    SignatureHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
    bearer_token,
    constant_time_equals,
    hmac_sha256_base64,
    hmac_sha256_hex,
    sign_timestamped,
    verify_hex,
    verify_timestamped,
)

SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
NOW = 1_750_000_000


def header(
    secret: str = SECRET,
    body: bytes = BODY,
    t: int = NOW,
    scheme: str = "v1",
    signature: str | None = None,
) -> str:
    """Build a t=…,<scheme>=… header the way Stripe does, with any one part replaceable."""
    digest = (
        signature or hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    )
    return f"t={t},{scheme}={digest}"


def test_hex_and_base64_match_the_reference_hmac() -> None:
    expected = hmac.new(b"k", b"body", hashlib.sha256)
    assert hmac_sha256_hex("k", b"body") == expected.hexdigest()
    assert hmac_sha256_hex(b"k", "body") == expected.hexdigest()
    assert hmac_sha256_base64("k", b"body") == base64.b64encode(expected.digest()).decode()


@pytest.mark.parametrize("secret", ["", b"", "   "])
def test_signers_refuse_an_empty_secret(secret: str | bytes) -> None:
    for sign in (hmac_sha256_hex, hmac_sha256_base64):
        with pytest.raises(ValueError, match="empty secret"):
            sign(secret, BODY)
    with pytest.raises(ValueError, match="empty secret"):
        sign_timestamped(secret, BODY, NOW)


def test_sign_timestamped_is_stripes_format() -> None:
    assert sign_timestamped(SECRET, BODY, NOW) == header()
    assert sign_timestamped(SECRET, BODY.decode(), NOW) == header()


def test_verify_timestamped_accepts_its_own_signature() -> None:
    signed = sign_timestamped(SECRET, BODY, NOW)
    assert verify_timestamped(SECRET, BODY, signed, now=NOW + 10) == NOW


def test_verify_timestamped_accepts_any_of_several_v1_signatures() -> None:
    rotated = f"{header(secret='old_secret')},v1={header().split('v1=')[1]}"
    assert verify_timestamped(SECRET, BODY, rotated, now=NOW) == NOW


def test_verify_timestamped_ignores_unknown_schemes_next_to_v1() -> None:
    assert verify_timestamped(SECRET, BODY, header() + ",v0=deadbeef", now=NOW) == NOW


@pytest.mark.parametrize("bad", [None, "", "   ", "garbage", "t=abc,v1=00", "v1=00", "t=,v1=00"])
def test_unparseable_header(bad: str | None) -> None:
    with pytest.raises(SignatureHeaderError):
        verify_timestamped(SECRET, BODY, bad, now=NOW)


def test_header_without_v1() -> None:
    with pytest.raises(NoSignatureError, match="no v1"):
        verify_timestamped(SECRET, BODY, header(scheme="v0"), now=NOW)


def test_tampered_body() -> None:
    with pytest.raises(SignatureMismatchError):
        verify_timestamped(SECRET, BODY + b" ", header(), now=NOW)


def test_wrong_secret() -> None:
    with pytest.raises(SignatureMismatchError):
        verify_timestamped(SECRET, BODY, header(secret="whsec_other"), now=NOW)


def test_changed_timestamp_breaks_the_signature() -> None:
    forged = header().replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureMismatchError):
        verify_timestamped(SECRET, BODY, forged, now=NOW)


def test_wrong_signature_value() -> None:
    with pytest.raises(SignatureMismatchError):
        verify_timestamped(SECRET, BODY, header(signature="0" * 64), now=NOW)


@pytest.mark.parametrize("skew", [301, -301])
def test_stale_or_future_timestamp(skew: int) -> None:
    with pytest.raises(StaleTimestampError, match="300 s"):
        verify_timestamped(SECRET, BODY, header(), now=NOW + skew)


def test_tolerance_can_be_widened_or_disabled() -> None:
    assert verify_timestamped(SECRET, BODY, header(), tolerance=1000, now=NOW + 999) == NOW
    assert verify_timestamped(SECRET, BODY, header(), tolerance=None, now=NOW + 10**6) == NOW


def test_failures_have_distinct_messages() -> None:
    messages = set()
    for bad, now in (
        (None, NOW),
        (header(scheme="v0"), NOW),
        (header(secret="x"), NOW),
        (header(), NOW + 1000),
    ):
        with pytest.raises(SignatureError) as info:
            verify_timestamped(SECRET, BODY, bad, now=now)
        messages.add(str(info.value))
    assert len(messages) == 4


def test_verify_hex_plain_and_prefixed() -> None:
    digest = hmac_sha256_hex(SECRET, BODY)
    verify_hex(SECRET, BODY, digest)
    verify_hex(SECRET, BODY, digest.upper())
    verify_hex(SECRET, BODY, f"hmac-sha256={digest}")
    verify_hex(SECRET, BODY.decode(), f" HMAC-SHA256={digest} ")


@pytest.mark.parametrize("signature", [None, "", "hmac-sha256="])
def test_verify_hex_missing_signature(signature: str | None) -> None:
    with pytest.raises(SignatureHeaderError):
        verify_hex(SECRET, BODY, signature)


def test_verify_hex_tampered_body_wrong_secret_wrong_digest() -> None:
    digest = hmac_sha256_hex(SECRET, BODY)
    with pytest.raises(SignatureMismatchError):
        verify_hex(SECRET, BODY + b"x", digest)
    with pytest.raises(SignatureMismatchError):
        verify_hex("other", BODY, digest)
    with pytest.raises(SignatureMismatchError):
        verify_hex(SECRET, BODY, digest[:-1] + ("0" if digest[-1] != "0" else "1"))
    with pytest.raises(SignatureMismatchError):
        verify_hex(SECRET, BODY, "sha1=" + digest)


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert constant_time_equals(b"abc", "abc")
    assert constant_time_equals("ключ", "ключ")  # non-ASCII text must not raise TypeError
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert not constant_time_equals(None, "abc")
    assert not constant_time_equals("abc", None)


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc123", "abc123"),
        ("bearer abc123", "abc123"),
        ("  Bearer   abc123  ", "abc123"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc123", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(value: str | None, token: str | None) -> None:
    assert bearer_token(value) == token
