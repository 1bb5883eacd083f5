"""Provider webhooks: POST /webhooks/stripe, /webhooks/razorpay, and /webhooks/test in test mode."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from shop import metrics
from shop.api import json_body
from shop.api.acp import json_response
from shop.api.json_body import BodyError
from shop.checkout.payment_events import DeferredEventError, apply_event
from shop.errors import ProviderError
from shop.payments import WebhookPayloadError, WebhookSignatureError
from shop.state import get_state
from shop.storage import transaction

bp = Blueprint("psp_webhooks", __name__)
log = logging.getLogger("shop.webhooks")

RETRY_AFTER_SECONDS = "60"


@bp.post("/webhooks/<provider>")
def receive(provider: str) -> Response:
    state = get_state()
    if provider != state.provider.name:
        return json_response(
            {
                "error": f"this store's paymentProvider is "
                f"'{state.provider.name}', not '{provider}'; point the provider's "
                f"webhook at /webhooks/{state.provider.name}."
            },
            404,
        )
    raw = request.get_data(cache=False)
    try:
        # The strict decoder first (depth, finite numbers, UTF-8): a 10,000-deep body must be
        # a 400 here, never a RecursionError inside a provider library's json.loads.
        json_body.loads(raw)
    except BodyError as exc:
        metrics.inc("shop_webhook_malformed_total", provider=provider)
        log.warning("refused an unreadable %s webhook body: %s", provider, exc)
        return json_response({"error": f"malformed event: {exc}"}, 400)
    try:
        event = state.provider.parse_webhook(raw, request.headers)
        outcome = apply_event(state, event)
    except WebhookSignatureError as exc:
        metrics.inc("shop_webhook_signature_failures_total", provider=provider)
        log.warning("rejected %s webhook from %s: %s", provider, request.remote_addr, exc)
        return json_response({"error": f"signature verification failed: {exc}"}, 400)
    except WebhookPayloadError as exc:
        # Genuine but unreadable (a provider API change, a hand-made test): not an attack, so
        # counted apart from signature failures. A 400 makes the provider show it as failed.
        metrics.inc("shop_webhook_malformed_total", provider=provider)
        log.warning("could not read a signed %s webhook: %s", provider, exc)
        return json_response({"error": f"malformed event: {exc}"}, 400)
    except DeferredEventError as exc:
        metrics.inc("shop_webhook_events_total", outcome="deferred")
        log.info(
            "deferred a %s webhook, asking %s to deliver it again: %s", provider, provider, exc
        )
        response = json_response({"error": f"not applied yet, deliver it again later: {exc}"}, 503)
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    except ProviderError as exc:
        # A lookup at the provider failed (e.g. the Razorpay order that names the session).
        # The event is not recorded, so answering 5xx makes the provider deliver it again.
        transaction.rollback()
        metrics.inc("shop_webhook_events_total", outcome="provider_unavailable")
        log.error(
            "could not apply a %s webhook yet, asking %s to retry it: %s", provider, provider, exc
        )
        response = json_response(
            {
                "error": f"the store could not reach {provider} to act on "
                f"this event; nothing was changed, deliver it again later "
                f"({exc})"
            },
            503,
        )
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    return json_response({"received": True, "outcome": outcome})
