"""Provider webhooks never answer 500: a body no decoder should read is a 400, counted."""

from __future__ import annotations

import pytest

from tests.conftest import RecordingSink
from tests.fake_psp import FakePSP
from tests.offline_events import offline_signature
from tests.psp_app import metric, provider_app, razorpay_signature, stripe_signature

DEEP = 10_000
BODIES = {
    "arrays": b"[" * DEEP + b"]" * DEEP,
    "objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "unclosed": b"[" * DEEP,
    "not_utf8": b'{"id": "\xff"}',
    "nan": b'{"id": "evt", "type": "payment.succeeded", "amount": NaN}',
}
SIGNED = {
    "test": lambda body: {"X-Test-Signature": offline_signature(body)},
    "stripe": lambda body: {"Stripe-Signature": stripe_signature(body)},
    "razorpay": lambda body: {"X-Razorpay-Signature": razorpay_signature(body)},
}


@pytest.mark.parametrize("provider", ["test", "stripe", "razorpay"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_unreadable_bodies_are_400_and_counted(
    make_app, fake_psp: FakePSP, provider: str, shape: str
) -> None:
    app = (
        make_app()
        if provider == "test"
        else provider_app(make_app, fake_psp, provider, RecordingSink())
    )
    client = app.test_client()
    before = metric(client, "shop_webhook_malformed_total", provider=provider)
    body = BODIES[shape]

    # Signed as the provider signs, so only the body can be the problem.
    response = client.post(
        f"/webhooks/{provider}",
        data=body,
        content_type="application/json",
        headers=SIGNED[provider](body),
    )

    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json()["error"].startswith("malformed event")
    assert metric(client, "shop_webhook_malformed_total", provider=provider) == before + 1
