"""Order hand-off: every message about an order reaches its destination exactly once.

Messages are rows in `order_deliveries`, inserted in the same transaction that marks the
session paid (or flagged, or canceled), unique per (session, destination, event). Sending
happens after the commit on the process's one hand-off thread (a bounded queue), so the
agent's /complete answer never waits for the merchant's endpoint. A worker takes a row with
one conditional UPDATE (a lease); a worker that dies mid-send lets the lease run out, and the
per-worker sweeper picks the row up again.

Failures are retried on the schedule stated in `retry_schedule` (about a day); after the last
try the row is `gave_up`: logged once with its whole payload, listed by `orders failed`,
and kept for `orders replay` (shop.checkout.retention: how long). A row whose sink drops orders
(LogSink: no orderWebhookUrl) is inserted `dropped` and logged when its transaction commits,
never retried by itself, and waits for `orders replay` once a URL is set.

States: pending -> delivering (leased) -> delivered | failed (retried) | gave_up | dropped.
For gave_up and dropped rows `next_at` holds when they got there (no try is due any more).

Modules: `payload` (the order's JSON shapes), `sinks` (webhook, log, agent events), `outbox`
(rows), `sending` and `courier` (when and how they go), `replay`, `retry_schedule`.

May import: pricing, config, the public surface of storage, and the shared modules in shop/.
Never checkout (checkout calls orders), api or cli.
"""

from __future__ import annotations

from shop.orders.courier import init_app, schedule, sweep
from shop.orders.outbox import (
    AGENT,
    MERCHANT,
    OPEN_STATES,
    STRANDED_STATES,
    agent_event_key,
    enqueue_order_canceled,
    enqueue_order_created,
    enqueue_order_flagged,
)
from shop.orders.replay import backlog, dropped_sessions, replay, undelivered
from shop.orders.sending import claim, deliver_session, send_claimed

__all__ = [
    "AGENT",
    "MERCHANT",
    "OPEN_STATES",
    "STRANDED_STATES",
    "agent_event_key",
    "backlog",
    "claim",
    "deliver_session",
    "dropped_sessions",
    "enqueue_order_canceled",
    "enqueue_order_created",
    "enqueue_order_flagged",
    "init_app",
    "replay",
    "schedule",
    "send_claimed",
    "sweep",
    "undelivered",
]
