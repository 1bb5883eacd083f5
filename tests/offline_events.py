"""Signed webhooks for the offline `test` provider, signed here independently of shop/security.py.

`X-Test-Signature` is the hex HMAC-SHA256 of the raw body with TEST_WEBHOOK_SECRET; a store
without that variable uses the documented demo secret (README, "Trying it without a provider").
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

DEMO_WEBHOOK_SECRET = "demo-webhook-secret"


def offline_signature(raw: bytes, secret: str = DEMO_WEBHOOK_SECRET) -> str:
    """Return X-Test-Signature for a raw body."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def post_offline_event(
    client: Any, body: dict[str, Any] | bytes | str, secret: str = DEMO_WEBHOOK_SECRET
) -> Any:
    """POST a test-provider event to /webhooks/test, signed as the store expects."""
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body))
    raw_bytes = raw.encode() if isinstance(raw, str) else raw
    return client.post(
        "/webhooks/test",
        data=raw_bytes,
        content_type="application/json",
        headers={"X-Test-Signature": offline_signature(raw_bytes, secret)},
    )
