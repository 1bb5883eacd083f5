"""The checkout domain: the session state machine behind every surface (ACP, short routes, Forter).

Speaks plain Python and integer minor units; never imports flask.request. The modules, in the
order a session meets them: `model` (statuses, messages, views), `reading` (load, expire,
price and assess), `sessions` (create, update, cancel), `paying` (complete), `outcomes` (paid,
failed, flagged, from complete and provider webhooks), `stuck` (payments that never finish).
Beside them: `session_rows` (the session table's statements), `stock` (atomic reserve and
release), `payment_events` and `refunds` (what provider webhooks do to sessions), `buyers`
(returning buyers), `forter` (Forter's sticky references and accounts), `retention` (what is
forgotten when), `tally` (business counts per hour for the /status page).

May import: orders, payments, pricing, config, the public surface of storage, and the shared
modules in shop/. Never api or cli, never flask.request.
"""

from __future__ import annotations

from shop.checkout.model import (
    MAX_COUPON_CODE_LENGTH,
    MAX_COUPON_CODES,
    MAX_LINES,
    MAX_QUANTITY,
    OPEN,
    Message,
    SessionInput,
    SessionView,
    Status,
    new_session_id,
    order_id_for,
)
from shop.checkout.outcomes import (
    Settlement,
    fail_payment,
    flag_for_review,
    mark_paid,
    refund_duplicate,
    settle_payment,
)
from shop.checkout.paying import complete_session
from shop.checkout.reading import get_session
from shop.checkout.sessions import cancel_session, create_session, update_session
from shop.checkout.stuck import (
    STALLED_CLAIM_SECONDS,
    UNSETTLED_PAYMENT_SECONDS,
    release_stuck_payments,
)

__all__ = [
    "MAX_COUPON_CODES",
    "MAX_COUPON_CODE_LENGTH",
    "MAX_LINES",
    "MAX_QUANTITY",
    "OPEN",
    "STALLED_CLAIM_SECONDS",
    "UNSETTLED_PAYMENT_SECONDS",
    "Message",
    "SessionInput",
    "SessionView",
    "Settlement",
    "Status",
    "cancel_session",
    "complete_session",
    "create_session",
    "fail_payment",
    "flag_for_review",
    "get_session",
    "mark_paid",
    "new_session_id",
    "order_id_for",
    "refund_duplicate",
    "release_stuck_payments",
    "settle_payment",
    "update_session",
]
