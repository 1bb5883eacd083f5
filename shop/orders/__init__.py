"""Order hand-off: every message about an order reaches its destination, once wherever it can.

Messages are rows in `order_deliveries`, inserted in the same transaction that marks the
session paid (or flagged, or canceled), unique per (session, destination, event). A row is
inserted already leased to the process that commits it; after the commit its process's one
hand-off thread (a bounded queue) sends it from what it holds (no read, no second lease) over
a kept-alive connection, and records the outcome, so the agent's /complete answer never
waits for the merchant's endpoint. A worker that dies mid-send lets the lease run out, and a
sweeper (one per worker, started when the worker boots) picks the row up again: a message
whose send was cut off may arrive twice (receivers dedupe on `Idempotency-Key`); a message
whose receiver answered 2xx is recorded delivered at once, before anything else is sent.

Failures are retried on the schedule stated in `retry_schedule` (about a day); after the last
try the row is `gave_up`: logged once with its whole payload, listed by `orders failed`,
and kept for `orders replay` (shop.checkout.retention: how long). A row whose sink drops orders
(LogSink: no orderWebhookUrl) is inserted `dropped` and logged when its transaction commits,
never retried by itself, and waits for `orders replay` once a URL is set.

States: pending (replay) -> delivering (leased) -> delivered | failed (retried) | gave_up |
dropped. For gave_up and dropped rows `next_at` holds when they got there (no try is due any
more); for a leased row, when its lease runs out.

Modules: `payload` (the order's JSON shapes), `sinks` (webhook, log, agent events),
`transport` (HTTP POST over kept-alive connections), `outbox` (rows), `sending` and `courier`
(when and how they go), `replay`, `retry_schedule`.

May import: pricing, config, the public surface of storage, and the shared modules in shop/.
Never checkout (checkout calls orders), api or cli.
"""

from __future__ import annotations

from shop.orders.courier import init_app, start_sweeper, sweep, wait_for_hand_offs
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
from shop.orders.replay import backlog, dropped_sessions, replay, sessions_in, undelivered
from shop.orders.sending import claim, deliver_session, due, send_all

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
    "due",
    "enqueue_order_canceled",
    "enqueue_order_created",
    "enqueue_order_flagged",
    "init_app",
    "replay",
    "send_all",
    "sessions_in",
    "start_sweeper",
    "sweep",
    "undelivered",
    "wait_for_hand_offs",
]
