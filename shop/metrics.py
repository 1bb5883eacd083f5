"""Prometheus metrics: a few per-process counters rendered in the text exposition format."""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

HELP = {
    "shop_checkouts_completed_total": "Checkout sessions completed (payment final).",
    "shop_payment_declines_total": "Payment attempts declined by the provider.",
    "shop_webhook_signature_failures_total": "Provider webhooks rejected for their signature.",
    "shop_webhook_malformed_total": "Signed provider webhooks whose body could not be read.",
    "shop_webhook_events_total": "Provider webhook events received, by outcome.",
    "shop_order_deliveries_total": "Order hand-offs to the merchant, by outcome.",
    # payments (issue 14)
    "shop_payment_setup_errors_total": "Payments refused for the store's own payment setup.",
    "shop_payment_outcome_unknown_total": "Payment attempts with an unknown outcome.",
    "shop_duplicate_payments_total": "Second payments for a paid session, by refund outcome.",
}


def inc(name: str, **labels: str) -> None:
    """Add one to a counter."""
    with _lock:
        _counters[(name, tuple(sorted(labels.items())))] += 1


def render() -> str:
    """Return every counter in Prometheus text format."""
    lines = []
    with _lock:
        snapshot = dict(_counters)
    for name, help_text in HELP.items():
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} counter")
        for (metric, labels), value in sorted(snapshot.items()):
            if metric != name:
                continue
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value}" if labels else f"{name} {value}")
    return "\n".join(lines) + "\n"
