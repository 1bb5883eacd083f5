"""POST /webhooks/stripe and /webhooks/razorpay over HTTP, signed the way each provider signs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ADDRESS_CA, ADDRESS_OR, RecordingSink, assert_acp, cart
from tests.fake_psp import FakePSP
from tests.order_schemas import PAYLOAD_SCHEMA
from tests.psp_app import (
    agent,
    intent,
    metric,
    post_razorpay,
    post_stripe,
    provider_app,
    razorpay_event,
    razorpay_payment_data,
    razorpay_signature,
    row_of,
    stock_of,
    stripe_event,
    stripe_signature,
    total,
    wait_for,
)

FAILURES = "shop_webhook_signature_failures_total"
MALFORMED = "shop_webhook_malformed_total"
INTENTS = "/v1/payment_intents"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def _events(sink: RecordingSink) -> list[str]:
    # Sorted: two hand-off threads may send order.created and order.flagged in either order.
    return sorted(o.get("event") for o in sink.orders)


def _flag(sink: RecordingSink) -> dict[str, Any]:
    [flagged] = [o for o in sink.orders if o.get("event") == "order.flagged"]
    PAYLOAD_SCHEMA.validate(flagged)
    return flagged["flag"]


def _in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start call() on a thread; return a function that waits for and returns its result."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join(10)
        assert result, "the call did not finish"
        return result[0]

    return wait


def _status(acp, session_id: str) -> dict[str, Any]:
    return acp.get(f"/checkout_sessions/{session_id}").get_json()


# --- Stripe --------------------------------------------------------------------------------


@pytest.fixture
def stripe_app(make_app, fake_psp: FakePSP, sink: RecordingSink):
    return provider_app(make_app, fake_psp, "stripe", sink)


@pytest.fixture
def stripe_acp(stripe_app):
    return agent(stripe_app)


def _ready_stripe(acp) -> dict[str, Any]:
    body = acp.create(cart(("scarce", 2), address=ADDRESS_CA)).get_json()
    assert body["status"] == "ready_for_payment"
    return body


def _paying_stripe(acp, fake_psp: FakePSP) -> tuple[dict[str, Any], str]:
    """Return a session whose PaymentIntent is `processing` (in_progress, stock held)."""
    session = _ready_stripe(acp)
    fake_psp.next_outcomes.append("processing")
    assert acp.complete(session["id"], "tok_visa").get_json()["status"] == "in_progress"
    [intent_id] = fake_psp.payment_intents
    return session, intent_id


def test_stripe_succeeded_completes_a_session_the_agent_never_completed(
    stripe_app, stripe_acp, sink: RecordingSink
) -> None:
    # e.g. the agent's complete timed out after Stripe charged: the webhook finishes it.
    session = _ready_stripe(stripe_acp)
    body = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), "pi_webhook_only")
    )
    response = post_stripe(stripe_app.test_client(), body)

    assert (response.status_code, response.get_json()) == (
        200,
        {"received": True, "outcome": "completed"},
    )
    done = _status(stripe_acp, session["id"])
    assert_acp(done, "CheckoutSessionWithOrder")
    assert done["status"] == "completed"
    assert stock_of(stripe_app, "scarce") == 3
    row = row_of(stripe_app, session["id"])
    assert (row.payment_reference, row.amount_paid, row.flagged) == (
        "pi_webhook_only",
        total(session),
        0,
    )
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "stripe", "reference": "pi_webhook_only"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered body", "No signatures found matching"),
        ("wrong secret", "No signatures found matching"),
        ("stale timestamp", "Timestamp outside the tolerance zone"),
        ("missing header", "Stripe-Signature header is missing"),
        ("no v1", "No signatures found with expected scheme"),
    ],
)
def test_stripe_signature_failures_are_400_logged_and_counted(
    stripe_app, stripe_acp, caplog: pytest.LogCaptureFixture, case: str, reason: str
) -> None:
    session = _ready_stripe(stripe_acp)
    body = stripe_event("payment_intent.succeeded", intent(session["id"], total(session)))
    signature = stripe_signature(body)
    if case == "tampered body":
        body = body.replace(str(total(session)).encode(), b"1")
    elif case == "wrong secret":
        signature = stripe_signature(body, secret="whsec_someone_else")
    elif case == "stale timestamp":
        signature = stripe_signature(body, t=int(time.time()) - 301)
    elif case == "no v1":
        signature = signature.replace("v1=", "v0=")
    client = stripe_app.test_client()
    before = metric(client, FAILURES, provider="stripe")
    with caplog.at_level(logging.WARNING, logger="shop.webhooks"):
        if case == "missing header":
            response = client.post("/webhooks/stripe", data=body, content_type="application/json")
        else:
            response = post_stripe(client, body, signature)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("signature verification failed") and reason in error
    assert metric(client, FAILURES, provider="stripe") == before + 1
    assert any(reason in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert _status(stripe_acp, session["id"])["status"] == "ready_for_payment"


def test_stripe_signed_but_malformed_event_is_400_and_counted_apart(
    stripe_app, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"id": "evt_bad", "object": "event", "data": {"object": {}}}'  # no type
    client = stripe_app.test_client()
    signatures, malformed = (
        metric(client, FAILURES, provider="stripe"),
        metric(client, MALFORMED, provider="stripe"),
    )
    with caplog.at_level(logging.WARNING, logger="shop.webhooks"):
        response = post_stripe(client, body)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("malformed event") and "type" in error
    assert metric(client, MALFORMED, provider="stripe") == malformed + 1
    assert metric(client, FAILURES, provider="stripe") == signatures  # it was genuine
    assert any("could not read" in r.getMessage() for r in caplog.records)


def test_stripe_timestamp_within_tolerance_is_accepted(stripe_app, stripe_acp) -> None:
    session = _ready_stripe(stripe_acp)
    body = stripe_event("payment_intent.succeeded", intent(session["id"], total(session)))
    response = post_stripe(
        stripe_app.test_client(), body, stripe_signature(body, t=int(time.time()) - 240)
    )
    assert response.get_json()["outcome"] == "completed"


def test_stripe_duplicate_event_does_nothing(
    stripe_app, stripe_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, intent_id = _paying_stripe(stripe_acp, fake_psp)
    body = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), intent_id), "evt_dup"
    )
    client = stripe_app.test_client()

    assert post_stripe(client, body).get_json()["outcome"] == "completed"
    again = post_stripe(client, body)  # Stripe redelivers the same event

    assert (again.status_code, again.get_json()["outcome"]) == (200, "duplicate")
    other = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), intent_id), "evt_other"
    )
    assert post_stripe(client, other).get_json()["outcome"] == "already_completed"
    wait_for(lambda: sink.orders)
    time.sleep(0.1)
    assert _events(sink) == ["order.created"]
    assert stock_of(stripe_app, "scarce") == 3


def test_stripe_failed_releases_stock_and_a_later_success_still_completes(
    stripe_app, stripe_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, intent_id = _paying_stripe(stripe_acp, fake_psp)
    assert stock_of(stripe_app, "scarce") == 3
    failed = intent(
        session["id"],
        total(session),
        intent_id,
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
        },
    )
    client = stripe_app.test_client()
    response = post_stripe(
        client, stripe_event("payment_intent.payment_failed", failed, "evt_failed")
    )

    assert response.get_json()["outcome"] == "payment_failed"
    reopened = _status(stripe_acp, session["id"])
    assert_acp(reopened, "CheckoutSession")
    assert reopened["status"] == "ready_for_payment"
    [message] = reopened["messages"]
    assert message["code"] == "payment_declined"
    assert "insufficient funds" in message["content"]
    assert stock_of(stripe_app, "scarce") == 5

    # Out of order: a success for the same session after the failure (a retried intent)
    # still completes it and takes the stock again.
    late = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), intent_id), "evt_late_ok"
    )
    assert post_stripe(client, late).get_json()["outcome"] == "completed"
    assert _status(stripe_acp, session["id"])["status"] == "completed"
    assert stock_of(stripe_app, "scarce") == 3
    assert wait_for(lambda: sink.orders)


def test_stripe_failure_after_success_never_unpays(
    stripe_app, stripe_acp, fake_psp: FakePSP
) -> None:
    session, intent_id = _paying_stripe(stripe_acp, fake_psp)
    client = stripe_app.test_client()
    post_stripe(
        client,
        stripe_event(
            "payment_intent.succeeded", intent(session["id"], total(session), intent_id), "evt_a"
        ),
    )
    failed = intent(session["id"], total(session), intent_id, status="requires_payment_method")
    outcome = post_stripe(
        client, stripe_event("payment_intent.payment_failed", failed, "evt_b")
    ).get_json()["outcome"]

    assert outcome == "ignored_in_status:completed"
    assert _status(stripe_acp, session["id"])["status"] == "completed"
    assert stock_of(stripe_app, "scarce") == 3


def _failed_intent(session: dict[str, Any], intent_id: str) -> dict[str, Any]:
    return intent(
        session["id"],
        total(session),
        intent_id,
        status="requires_payment_method",
        last_payment_error={"type": "card_error", "code": "card_declined"},
    )


def test_stripe_late_failure_of_an_earlier_attempt_never_reopens_a_paying_session(
    stripe_app, stripe_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    # The double charge the audit found: PI 1 declines, PI 2 is processing, PI 1's
    # payment_failed arrives late. It must not reopen the session for a third charge.
    session = _ready_stripe(stripe_acp)
    assert stripe_acp.complete(session["id"], "tok_chargeDeclined").get_json()["status"] == (
        "ready_for_payment"
    )
    [first] = fake_psp.payment_intents
    fake_psp.next_outcomes.append("processing")
    assert stripe_acp.complete(session["id"], "tok_visa").get_json()["status"] == ("in_progress")
    [second] = [i for i in fake_psp.payment_intents if i != first]
    client = stripe_app.test_client()

    late = post_stripe(
        client, stripe_event("payment_intent.payment_failed", _failed_intent(session, first), "e1")
    )

    assert (late.status_code, late.get_json()["outcome"]) == (200, "ignored_other_attempt")
    assert _status(stripe_acp, session["id"])["status"] == "in_progress"
    assert stock_of(stripe_app, "scarce") == 3  # still held for PI 2
    third = stripe_acp.complete(session["id"], "tok_visa").get_json()
    assert third["status"] == "in_progress"
    assert len(fake_psp.sent("POST", INTENTS)) == 2  # no third PaymentIntent

    # PI 2's own failure does reopen it, and the next card pays once.
    current = post_stripe(
        client, stripe_event("payment_intent.payment_failed", _failed_intent(session, second), "e2")
    )
    assert current.get_json()["outcome"] == "payment_failed"
    assert stock_of(stripe_app, "scarce") == 5
    assert stripe_acp.complete(session["id"], "tok_mastercard").get_json()["status"] == (
        "completed"
    )
    assert len(fake_psp.sent("POST", INTENTS)) == 3
    assert stock_of(stripe_app, "scarce") == 3
    assert wait_for(lambda: sink.orders)


def test_stripe_failure_while_a_charge_is_in_flight_is_deferred(
    stripe_app, stripe_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _ready_stripe(stripe_acp)
    stripe_acp.complete(session["id"], "tok_chargeDeclined")
    [first] = fake_psp.payment_intents
    fake_psp.hold = rf"POST {INTENTS}"  # the next PaymentIntent is still being created
    paying = _in_thread(lambda: stripe_acp.complete(session["id"], "tok_visa").get_json())
    assert fake_psp.held.wait(5)
    assert row_of(stripe_app, session["id"]).payment_reference is None  # not answered yet
    late = stripe_event("payment_intent.payment_failed", _failed_intent(session, first), "e_late")
    client = stripe_app.test_client()

    deferred = post_stripe(client, late)

    # Nothing moves and nothing is recorded: Stripe delivers it again later.
    assert deferred.status_code == 503 and deferred.headers["Retry-After"]
    assert stock_of(stripe_app, "scarce") == 3
    assert row_of(stripe_app, session["id"]).status == "in_progress"
    fake_psp.resume.set()
    assert paying()["status"] == "completed"
    assert stock_of(stripe_app, "scarce") == 3
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == row_of(stripe_app, session["id"]).payment_reference
    again = post_stripe(client, late)
    assert (again.status_code, again.get_json()["outcome"]) == (200, "ignored_in_status:completed")


def test_stripe_dispute_finds_the_session_by_its_payment_intent(
    stripe_app, stripe_acp, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    session = _ready_stripe(stripe_acp)
    assert stripe_acp.complete(session["id"], "tok_visa").get_json()["status"] == "completed"
    intent_id = row_of(stripe_app, session["id"]).payment_reference
    wait_for(lambda: sink.orders)
    # As Stripe sends it: the dispute names the charge and PaymentIntent by id, no metadata.
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": total(session),
        "currency": "usd",
        "charge": "ch_1",
        "payment_intent": intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
        "metadata": {},
    }
    client = stripe_app.test_client()
    with caplog.at_level(logging.ERROR):
        response = post_stripe(client, stripe_event("charge.dispute.created", dispute, "evt_dp"))

    assert response.get_json()["outcome"] == "flagged"
    assert row_of(stripe_app, session["id"]).flagged == 1
    assert any(
        "DISPUTE" in r.getMessage() and intent_id in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )
    wait_for(lambda: len(sink.orders) >= 2)
    assert _events(sink) == ["order.created", "order.flagged"]
    assert _flag(sink) == {"reason": "dispute", "payment_reference": intent_id}
    again = post_stripe(client, stripe_event("charge.dispute.created", dispute, "evt_dp2"))
    assert again.get_json()["outcome"] == "already_flagged"


def test_stripe_dispute_for_an_unknown_payment_is_logged(
    stripe_app, caplog: pytest.LogCaptureFixture
) -> None:
    dispute = {
        "id": "dp_2",
        "object": "dispute",
        "amount": 100,
        "currency": "usd",
        "charge": "ch_x",
        "payment_intent": "pi_not_ours",
        "reason": "fraudulent",
    }
    with caplog.at_level(logging.ERROR):
        response = post_stripe(
            stripe_app.test_client(), stripe_event("charge.dispute.created", dispute, "evt_dpx")
        )
    assert response.get_json()["outcome"] == "no_session"
    assert any(
        "pi_not_ours" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    )


def test_stripe_payment_without_session_is_logged_loudly(
    stripe_app, caplog: pytest.LogCaptureFixture
) -> None:
    body = stripe_event("payment_intent.succeeded", intent(None, 5000, "pi_dashboard_charge"))
    with caplog.at_level(logging.ERROR):
        response = post_stripe(stripe_app.test_client(), body)

    assert response.get_json()["outcome"] == "paid_without_session"
    [line] = [r for r in caplog.records if "pi_dashboard_charge" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert "WITHOUT CHECKOUT SESSION" in line.getMessage()


def test_stripe_payment_for_another_amount_completes_flagged(
    stripe_app, stripe_acp, fake_psp: FakePSP, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    session, intent_id = _paying_stripe(stripe_acp, fake_psp)
    short = total(session) - 1000
    with caplog.at_level(logging.ERROR):
        response = post_stripe(
            stripe_app.test_client(),
            stripe_event(
                "payment_intent.succeeded", intent(session["id"], short, intent_id), "evt_short"
            ),
        )

    assert response.get_json()["outcome"] == "completed_amount_mismatch"
    assert _status(stripe_acp, session["id"])["status"] == "completed"  # money was taken
    row = row_of(stripe_app, session["id"])
    assert (row.amount_paid, row.flagged) == (short, 1)
    [line] = [r for r in caplog.records if "AMOUNT MISMATCH" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert str(short) in line.getMessage() and str(total(session)) in line.getMessage()
    wait_for(lambda: len(sink.orders) >= 2)
    assert _events(sink) == ["order.created", "order.flagged"]
    assert _flag(sink) == {
        "reason": "amount_mismatch",
        "payment_reference": intent_id,
        "amount_paid": short,
        "currency_paid": "usd",
    }


def test_stripe_payment_in_another_currency_completes_flagged(
    stripe_app, stripe_acp, fake_psp: FakePSP
) -> None:
    session, intent_id = _paying_stripe(stripe_acp, fake_psp)
    body = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), intent_id, currency="eur")
    )
    assert post_stripe(stripe_app.test_client(), body).get_json()["outcome"] == (
        "completed_amount_mismatch"
    )
    assert row_of(stripe_app, session["id"]).flagged == 1


def test_other_stripe_events_are_acknowledged_and_ignored(stripe_app) -> None:
    body = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    response = post_stripe(stripe_app.test_client(), body)
    assert (response.status_code, response.get_json()["outcome"]) == (200, "ignored")


@pytest.mark.parametrize("path", ["/webhooks/test", "/webhooks/razorpay"])
def test_a_stripe_store_has_no_other_webhook(stripe_app, path: str) -> None:
    # The unsigned test endpoint must not exist once a real provider is configured.
    body = json.dumps({"id": "evt_x", "type": "payment.succeeded", "session_id": "cs_x"})
    response = stripe_app.test_client().post(path, data=body, content_type="application/json")
    assert response.status_code == 404


# --- Razorpay ------------------------------------------------------------------------------


@pytest.fixture
def razorpay_app(make_app, fake_psp: FakePSP, sink: RecordingSink):
    return provider_app(make_app, fake_psp, "razorpay", sink)


@pytest.fixture
def razorpay_acp(razorpay_app):
    return agent(razorpay_app)


def _ready_razorpay(acp) -> tuple[dict[str, Any], str]:
    body = acp.create(cart(("scarce", 2), address=ADDRESS_OR, currency="inr")).get_json()
    assert body["status"] == "ready_for_payment"
    return body, body["capabilities"]["payment"]["handlers"][0]["config"]["order_id"]


def _captured(fake_psp: FakePSP, order_id: str, amount: int, **kw: Any) -> dict[str, Any]:
    payment_id = fake_psp.add_razorpay_payment(order_id, amount, status="captured", **kw)
    return dict(fake_psp.razorpay_payments[payment_id])


def test_razorpay_payment_captured_reads_the_session_from_our_order(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    payment = _captured(fake_psp, order_id, total(session))
    payment["notes"] = {"checkout_session_id": "cs_someone_elses"}  # notes from the browser
    response = post_razorpay(
        razorpay_app.test_client(),
        razorpay_event("payment.captured", payment),
        event_id="evt_rzp_1",
    )

    assert (response.status_code, response.get_json()["outcome"]) == (200, "completed")
    assert len(fake_psp.sent("GET", rf"/v1/orders/{order_id}")) == 1
    assert _status(razorpay_acp, session["id"])["status"] == "completed"
    assert stock_of(razorpay_app, "scarce") == 3
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "razorpay", "reference": payment["id"]}


def test_razorpay_order_paid_needs_no_lookup(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    payment = _captured(fake_psp, order_id, total(session))
    order = {
        **fake_psp.razorpay_orders[order_id],
        "status": "paid",
        "amount_paid": total(session),
        "amount_due": 0,
    }
    response = post_razorpay(
        razorpay_app.test_client(), razorpay_event("order.paid", payment, order), event_id="evt_op"
    )

    assert response.get_json()["outcome"] == "completed"
    assert fake_psp.sent("GET", r"/v1/.*") == []
    assert row_of(razorpay_app, session["id"]).payment_reference == payment["id"]
    assert wait_for(lambda: sink.orders)


@pytest.mark.parametrize("case", ["tampered body", "wrong secret", "missing header"])
def test_razorpay_signature_failures_are_400_logged_and_counted(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    body = razorpay_event("payment.captured", _captured(fake_psp, order_id, total(session)))
    signature = razorpay_signature(body)
    if case == "tampered body":
        body = body.replace(b'"captured"', b'"kaptured"', 1)
    elif case == "wrong secret":
        signature = razorpay_signature(body, secret="not-the-webhook-secret")
    client = razorpay_app.test_client()
    before = metric(client, FAILURES, provider="razorpay")
    with caplog.at_level(logging.WARNING, logger="shop.webhooks"):
        if case == "missing header":
            response = client.post("/webhooks/razorpay", data=body, content_type="application/json")
        else:
            response = post_razorpay(client, body, signature)

    assert response.status_code == 400
    assert "X-Razorpay-Signature did not verify" in response.get_json()["error"]
    assert metric(client, FAILURES, provider="razorpay") == before + 1
    assert any("X-Razorpay-Signature" in r.getMessage() for r in caplog.records)
    assert fake_psp.sent("GET", r"/v1/.*") == []  # nothing is looked up for a forged event
    assert _status(razorpay_acp, session["id"])["status"] == "ready_for_payment"


def test_razorpay_signed_but_malformed_event_is_400_and_counted_apart(razorpay_app) -> None:
    body = b'{"payload": {"payment": {"entity": {"id": "pay_1"}}}}'  # no "event"
    client = razorpay_app.test_client()
    signatures, malformed = (
        metric(client, FAILURES, provider="razorpay"),
        metric(client, MALFORMED, provider="razorpay"),
    )
    response = post_razorpay(client, body, event_id="evt_bad")

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("malformed event")
    assert metric(client, MALFORMED, provider="razorpay") == malformed + 1
    assert metric(client, FAILURES, provider="razorpay") == signatures
    # Not recorded: the same event id, readable this time, is applied (not a duplicate).
    again = post_razorpay(
        client, razorpay_event("refund.created", {"id": "rfnd_1"}), event_id="evt_bad"
    )
    assert (again.status_code, again.get_json()["outcome"]) == (200, "ignored")


def test_razorpay_duplicate_event_id_does_nothing(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    body = razorpay_event("payment.captured", _captured(fake_psp, order_id, total(session)))
    client = razorpay_app.test_client()
    assert post_razorpay(client, body, event_id="evt_same").get_json()["outcome"] == "completed"
    again = post_razorpay(client, body, event_id="evt_same")
    assert (again.status_code, again.get_json()["outcome"]) == (200, "duplicate")
    wait_for(lambda: sink.orders)
    time.sleep(0.1)
    assert _events(sink) == ["order.created"]


def test_razorpay_replay_with_a_new_event_id_header_is_a_duplicate(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    # X-Razorpay-Event-Id is not covered by the signature: a genuine body replayed with
    # another header value is the same event (dedupe on the signed payment id and state).
    session, order_id = _ready_razorpay(razorpay_acp)
    body = razorpay_event("payment.captured", _captured(fake_psp, order_id, total(session)))
    client = razorpay_app.test_client()
    assert post_razorpay(client, body, event_id="evt_one").get_json()["outcome"] == "completed"
    for header in ("evt_two", None):
        again = post_razorpay(client, body, event_id=header)
        assert (again.status_code, again.get_json()["outcome"]) == (200, "duplicate")
    wait_for(lambda: sink.orders)
    time.sleep(0.1)
    assert _events(sink) == ["order.created"]


def test_razorpay_failed_payment_leaves_the_session_payable(
    razorpay_app, razorpay_acp, fake_psp: FakePSP
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    payment_id = fake_psp.add_razorpay_payment(
        order_id, total(session), status="failed", error_description="Card declined by the bank."
    )
    failed = razorpay_event("payment.failed", fake_psp.razorpay_payments[payment_id])
    client = razorpay_app.test_client()

    outcome = post_razorpay(client, failed, event_id="evt_f1").get_json()["outcome"]

    # Razorpay payments are never pending in this store: a failed attempt leaves the session
    # ready (the buyer may pay the same order again) and holds no stock.
    assert outcome == "ignored_in_status:ready_for_payment"
    assert stock_of(razorpay_app, "scarce") == 5
    paid = razorpay_event("payment.captured", _captured(fake_psp, order_id, total(session)))
    assert post_razorpay(client, paid, event_id="evt_ok").get_json()["outcome"] == "completed"
    # … and a failure that arrives after the success never un-pays it.
    late = post_razorpay(client, failed, event_id="evt_f2").get_json()["outcome"]
    assert late == "duplicate"  # the same signed body: the same event, whatever the header
    assert _status(razorpay_acp, session["id"])["status"] == "completed"
    assert stock_of(razorpay_app, "scarce") == 3


def test_razorpay_failure_of_an_earlier_payment_while_paying_is_deferred(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    # The buyer's first try failed in Razorpay Checkout, the second is being captured when
    # the first one's payment.failed arrives: the session must stay paying, stock held.
    session, order_id = _ready_razorpay(razorpay_acp)
    failed_id = fake_psp.add_razorpay_payment(order_id, total(session), status="failed")
    paid_id = fake_psp.add_razorpay_payment(order_id, total(session))
    fake_psp.hold = rf"GET /v1/payments/{paid_id}"
    paying = _in_thread(
        lambda: razorpay_acp.post(
            f"/checkout_sessions/{session['id']}/complete",
            razorpay_payment_data(order_id, paid_id),
        ).get_json()
    )
    assert fake_psp.held.wait(5)
    assert row_of(razorpay_app, session["id"]).status == "in_progress"

    client = razorpay_app.test_client()
    late = razorpay_event("payment.failed", fake_psp.razorpay_payments[failed_id])

    deferred = post_razorpay(client, late, event_id="evt_first_try_failed")

    # Not matched to the charge in flight, not applied, not recorded: delivered again later.
    assert deferred.status_code == 503 and deferred.headers["Retry-After"]
    assert row_of(razorpay_app, session["id"]).status == "in_progress"
    assert stock_of(razorpay_app, "scarce") == 3
    fake_psp.resume.set()
    assert paying()["status"] == "completed"
    assert stock_of(razorpay_app, "scarce") == 3
    assert len(fake_psp.sent("POST", rf"/v1/payments/{paid_id}/capture")) == 1
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == paid_id
    again = post_razorpay(client, late, event_id="evt_first_try_failed")
    assert (again.status_code, again.get_json()["outcome"]) == (200, "ignored_in_status:completed")


def test_razorpay_dispute_flags_the_order(
    razorpay_app,
    razorpay_acp,
    fake_psp: FakePSP,
    sink: RecordingSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    payment = _captured(fake_psp, order_id, total(session))
    client = razorpay_app.test_client()
    post_razorpay(client, razorpay_event("payment.captured", payment), event_id="evt_paid")
    wait_for(lambda: sink.orders)
    dispute = {
        "id": "disp_1",
        "entity": "dispute",
        "payment_id": payment["id"],
        "amount": total(session),
        "currency": "INR",
        "reason_code": "fraud",
        "phase": "chargeback",
        "status": "open",
    }
    with caplog.at_level(logging.ERROR):
        response = post_razorpay(
            client,
            razorpay_event("payment.dispute.created", payment, dispute=dispute),
            event_id="evt_disp",
        )

    assert response.get_json()["outcome"] == "flagged"
    assert any("DISPUTE" in r.getMessage() for r in caplog.records)
    wait_for(lambda: len(sink.orders) >= 2)
    assert _events(sink) == ["order.created", "order.flagged"]
    assert _flag(sink)["payment_reference"] == payment["id"]


@pytest.mark.parametrize("order_notes", [{}, None])
def test_razorpay_payment_outside_the_store_is_logged_loudly(
    razorpay_app, fake_psp: FakePSP, caplog: pytest.LogCaptureFixture, order_notes: Any
) -> None:
    if order_notes is None:  # a payment with no order (a payment link, the dashboard)
        payment = {
            "id": "pay_elsewhere",
            "entity": "payment",
            "amount": 5000,
            "currency": "INR",
            "status": "captured",
            "order_id": None,
            "notes": {},
        }
    else:  # an order somebody created by hand, without our notes
        fake_psp.razorpay_orders["order_byhand"] = {
            "id": "order_byhand",
            "entity": "order",
            "amount": 5000,
            "currency": "INR",
            "notes": order_notes,
            "status": "paid",
        }
        payment = {
            "id": "pay_elsewhere",
            "entity": "payment",
            "amount": 5000,
            "currency": "INR",
            "status": "captured",
            "order_id": "order_byhand",
            "notes": {},
        }
    with caplog.at_level(logging.ERROR):
        response = post_razorpay(
            razorpay_app.test_client(), razorpay_event("payment.captured", payment)
        )

    assert response.get_json()["outcome"] == "paid_without_session"
    assert any(
        "pay_elsewhere" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def test_razorpay_lookup_failure_is_503_and_the_redelivery_applies(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, caplog: pytest.LogCaptureFixture
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    body = razorpay_event("payment.captured", _captured(fake_psp, order_id, total(session)))
    client = razorpay_app.test_client()
    fake_psp.drop_responses = 1  # the order lookup never gets an answer
    with caplog.at_level(logging.ERROR, logger="shop.webhooks"):
        response = post_razorpay(client, body, event_id="evt_retry")

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "could not reach razorpay" in response.get_json()["error"]
    assert any("retry" in r.getMessage() for r in caplog.records)
    assert _status(razorpay_acp, session["id"])["status"] == "ready_for_payment"

    again = post_razorpay(client, body, event_id="evt_retry")  # Razorpay delivers it again

    assert (again.status_code, again.get_json()["outcome"]) == (200, "completed")
    assert _status(razorpay_acp, session["id"])["status"] == "completed"


def test_razorpay_payment_for_another_amount_completes_flagged(
    razorpay_app, razorpay_acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, order_id = _ready_razorpay(razorpay_acp)
    # The buyer paid an order for an older total (the cart changed after Checkout opened).
    payment = _captured(fake_psp, order_id, total(session) + 500)
    response = post_razorpay(
        razorpay_app.test_client(), razorpay_event("payment.captured", payment), event_id="evt_more"
    )

    assert response.get_json()["outcome"] == "completed_amount_mismatch"
    assert row_of(razorpay_app, session["id"]).amount_paid == total(session) + 500
    wait_for(lambda: len(sink.orders) >= 2)
    assert _events(sink) == ["order.created", "order.flagged"]
    assert _flag(sink)["reason"] == "amount_mismatch"
