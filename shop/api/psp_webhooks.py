"""Provider webhooks: POST /webhooks/stripe, /webhooks/razorpay (and /webhooks/test in test mode)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from shop import metrics
from shop.api.acp import json_response
from shop.payment_events import apply_event
from shop.payments import WebhookSignatureError
from shop.state import get_state

bp = Blueprint("psp_webhooks", __name__)
log = logging.getLogger("shop.webhooks")


@bp.post("/webhooks/<provider>")
def receive(provider: str) -> Response:
    state = get_state()
    if provider != state.provider.name:
        return json_response({"error": f"this store's paymentProvider is "
                              f"'{state.provider.name}', not '{provider}'; point the provider's "
                              f"webhook at /webhooks/{state.provider.name}."}, 404)
    raw = request.get_data(cache=False)
    try:
        event = state.provider.parse_webhook(raw, request.headers)
    except WebhookSignatureError as exc:
        metrics.inc("shop_webhook_signature_failures_total", provider=provider)
        log.warning("rejected %s webhook from %s: %s", provider, request.remote_addr, exc)
        return json_response({"error": f"signature verification failed: {exc}"}, 400)
    outcome = apply_event(state, event)
    return json_response({"received": True, "outcome": outcome})
