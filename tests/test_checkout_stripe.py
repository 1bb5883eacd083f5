"""Checkout over the ACP HTTP API with paymentProvider stripe: the real library against the fake."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest

from tests.conftest import ADDRESS_CA, RecordingSink, assert_acp, cart, payment
from tests.fake_psp import STRIPE_KEY, FakePSP
from tests.psp_app import (
    agent,
    intent,
    metric,
    post_stripe,
    provider_app,
    row_of,
    stock_of,
    stripe_event,
    total,
    wait_for,
)

INTENTS = "/v1/payment_intents"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def app(make_app, fake_psp: FakePSP, sink: RecordingSink):
    return provider_app(make_app, fake_psp, "stripe", sink)


@pytest.fixture
def acp(app):
    return agent(app)


def _ready(acp, *items: tuple[str, int]) -> dict[str, Any]:
    created = acp.create(cart(*items, address=ADDRESS_CA))
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["status"] == "ready_for_payment"
    return body


def _key(session_id: str, token: str) -> str:
    return f"shop-{session_id}-{hashlib.sha256(token.encode()).hexdigest()[:24]}"


def test_handlers_advertise_a_stripe_tokenized_card(acp) -> None:
    body = _ready(acp)
    assert_acp(body, "CheckoutSession")
    [handler] = body["capabilities"]["payment"]["handlers"]
    assert_acp(handler, "PaymentHandler")
    assert (handler["id"], handler["name"], handler["psp"]) == (
        "card_tokenized",
        "dev.acp.tokenized.card",
        "stripe",
    )
    assert handler["requires_delegate_payment"] is True
    assert handler["config"]["psp"] == "stripe"
    assert handler["config"]["environment"] == "test"  # an sk_test_ key
    assert STRIPE_KEY not in str(body)


def test_card_token_completes_and_stripe_receives_the_server_total(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _ready(acp, ("widget", 2))
    amount = total(session)
    assert amount == 2 * 2999 + 500 + round(2 * 2999 * 0.0725)  # items + shipping + CA tax

    response = acp.complete(session["id"], "tok_visa")

    assert response.status_code == 200
    body = response.get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    [sent] = fake_psp.sent("POST", INTENTS)
    assert sent.body["amount"] == str(amount)
    assert sent.body["currency"] == "usd"
    assert sent.body["confirm"] == "true"
    assert sent.body["allowed_payment_method_types"] == ["card"]
    assert sent.body["metadata"] == {
        "checkout_session_id": session["id"],
        "shop_attempt": _key(session["id"], "tok_visa"),
    }
    # The agent's credential type is "spt", but a tok_ token is a card token to Stripe: it
    # becomes a PaymentMethod first.
    [method] = fake_psp.sent("POST", "/v1/payment_methods")
    assert method.body == {"type": "card", "card": {"token": "tok_visa"}}
    assert sent.body["payment_method"] in fake_psp.payment_methods
    assert sent.headers["Idempotency-Key"] == _key(session["id"], "tok_visa")
    [intent_id] = fake_psp.payment_intents
    assert row_of(app, session["id"]).payment_reference == intent_id
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "stripe", "reference": intent_id}
    assert order["order"]["id"] == body["order"]["id"] == f"order_{session['id']}"
    assert next(t["amount"] for t in order["totals"] if t["type"] == "total") == amount


@pytest.mark.parametrize(
    ("token", "credential_type", "expected"),
    [
        (
            "spt_123abc",
            "spt",
            {"payment_method_data": {"shared_payment_granted_token": "spt_123abc"}},
        ),
        ("pm_card_visa", "spt", {"payment_method": "pm_card_visa"}),
        (
            "vt_opaque_vault_token",
            "spt",
            {"payment_method_data": {"shared_payment_granted_token": "vt_opaque_vault_token"}},
        ),
        ("card_1abc", "card", {"payment_method": "card_1abc"}),
    ],
)
def test_token_prefix_chooses_the_stripe_parameter(
    acp, fake_psp: FakePSP, token: str, credential_type: str, expected: dict[str, Any]
) -> None:
    fake_psp.grant_spt(token)  # spt_ and opaque tokens are Shared Payment Tokens here
    session = _ready(acp)
    body = payment(token)
    body["payment_data"]["instrument"]["credential"]["type"] = credential_type
    response = acp.post(f"/checkout_sessions/{session['id']}/complete", body)

    # A card_ id is a legacy Card this account does not have: Stripe's resource_missing.
    paid = "completed" if not token.startswith("card_") else "ready_for_payment"
    assert response.get_json()["status"] == paid
    [sent] = fake_psp.sent("POST", INTENTS)
    chosen = {k: sent.body[k] for k in ("payment_method", "payment_method_data") if k in sent.body}
    assert chosen == expected


def test_legacy_token_provider_shape_is_charged_the_same_way(acp, fake_psp: FakePSP) -> None:
    session = _ready(acp)
    response = acp.post(
        f"/checkout_sessions/{session['id']}/complete",
        {"payment_data": {"token": "tok_visa", "provider": "stripe"}},
    )

    assert response.get_json()["status"] == "completed"
    [method] = fake_psp.sent("POST", "/v1/payment_methods")
    assert method.body["card"] == {"token": "tok_visa"}
    [sent] = fake_psp.sent("POST", INTENTS)
    assert sent.headers["Idempotency-Key"] == _key(session["id"], "tok_visa")


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("tok_chargeDeclined", "declined"),
        ("tok_chargeDeclinedIncorrectCvc", "security code"),
    ],
)
def test_decline_reopens_the_session_and_a_new_card_pays(
    acp, app, fake_psp: FakePSP, sink: RecordingSink, token: str, words: str
) -> None:
    session = _ready(acp, ("scarce", 2))
    declined = acp.complete(session["id"], token)

    assert declined.status_code == 200
    body = declined.get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    [message] = [m for m in body["messages"] if m["type"] == "error"]
    assert (message["code"], message["param"]) == ("payment_declined", "$.payment_data")
    assert words in message["content"] and "Stripe" not in message["content"]
    assert message["content"].endswith("different card.")
    assert stock_of(app, "scarce") == 5
    assert "order" not in body

    paid = acp.complete(session["id"], "tok_visa").get_json()
    assert paid["status"] == "completed"
    assert stock_of(app, "scarce") == 3
    keys = [r.headers["Idempotency-Key"] for r in fake_psp.sent("POST", INTENTS)]
    assert keys == [_key(session["id"], token), _key(session["id"], "tok_visa")]
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == row_of(app, session["id"]).payment_reference


def test_three_d_secure_is_refused_and_the_payment_intent_canceled(
    acp, app, fake_psp: FakePSP
) -> None:
    session = _ready(acp, ("scarce", 1))
    body = acp.complete(session["id"], "tok_threeDSecure2Required").get_json()

    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    [message] = body["messages"]
    assert message["code"] == "requires_3ds"
    assert "3-D Secure" in message["content"]
    [intent_id] = fake_psp.payment_intents
    assert fake_psp.payment_intents[intent_id]["status"] == "canceled"
    [cancel] = fake_psp.sent("POST", rf"{INTENTS}/{intent_id}/cancel")
    assert (
        cancel.headers["Idempotency-Key"]
        == _key(session["id"], "tok_threeDSecure2Required") + "-cancel"
    )
    assert stock_of(app, "scarce") == 5


def test_stripe_500_is_424_asking_for_a_new_token_and_the_same_token_replays_it(
    acp, app, fake_psp: FakePSP, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    session = _ready(acp, ("scarce", 1))
    fake_psp.next_outcomes.append("server_error")
    with caplog.at_level(logging.ERROR):
        first = acp.complete(session["id"], "pm_card_visa", key="agent-key-1")

    assert first.status_code == 424
    error = first.get_json()
    assert_acp(error, "Error")
    # Stripe stored its 500 under this token's key, so "retry in a moment" would be a lie:
    # no Retry-After, and the error points at payment_data (a new token).
    assert (error["type"], error["code"], error["param"]) == (
        "processing_error",
        "payment_provider_error",
        "$.payment_data",
    )
    assert "Retry-After" not in first.headers
    assert stock_of(app, "scarce") == 5
    assert acp.get(f"/checkout_sessions/{session['id']}").get_json()["status"] == (
        "ready_for_payment"
    )
    assert STRIPE_KEY not in caplog.text
    # Before saying nothing was charged, the store looked the attempt up.
    assert fake_psp.sent("GET", f"{INTENTS}/search")

    again = acp.complete(session["id"], "pm_card_visa", key="agent-key-1")

    assert again.status_code == 424  # not replayed from our store: the call ran again …
    assert again.get_json()["code"] == "payment_provider_error"
    sent = fake_psp.sent("POST", INTENTS)
    assert len(sent) == 2
    # … with the same Stripe key, so Stripe answers its stored result and charges nothing new.
    assert {r.headers["Idempotency-Key"] for r in sent} == {_key(session["id"], "pm_card_visa")}
    assert fake_psp.payment_intents == {}
    assert stock_of(app, "scarce") == 5

    paid = acp.complete(session["id"], "tok_visa")  # what the error asked for: a new token

    assert paid.get_json()["status"] == "completed"
    assert stock_of(app, "scarce") == 4
    assert wait_for(lambda: sink.orders)


def test_lost_stripe_answer_is_asked_again_under_the_same_key_without_a_second_charge(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _ready(acp, ("scarce", 1))
    fake_psp.drop_responses = 1  # Stripe charged the card, the answer never arrived
    paid = acp.complete(session["id"], "pm_card_visa", key="agent-key-2")

    # The store asked again under the same idempotency key: Stripe answered what it did.
    assert paid.status_code == 200
    assert paid.get_json()["status"] == "completed"
    sent = fake_psp.sent("POST", INTENTS)
    assert len(sent) == 2 and len({r.headers["Idempotency-Key"] for r in sent}) == 1
    [intent_id] = fake_psp.payment_intents  # one PaymentIntent, not two
    assert row_of(app, session["id"]).payment_reference == intent_id
    assert stock_of(app, "scarce") == 4
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == intent_id


def _charged_but_unknown(acp, app, fake_psp: FakePSP) -> tuple[dict[str, Any], str]:
    """Complete while Stripe charges and every answer is lost (create, repeat, lookup)."""
    session = _ready(acp, ("scarce", 1))
    fake_psp.drop_responses = 3
    lost = acp.complete(session["id"], "pm_card_visa")

    assert lost.status_code == 503
    error = lost.get_json()
    assert_acp(error, "Error")
    assert (error["type"], error["code"]) == ("service_unavailable", "payment_outcome_unknown")
    assert "nothing was charged" not in error["message"]
    assert lost.headers["Retry-After"]
    [(intent_id, charged)] = fake_psp.payment_intents.items()
    assert charged["status"] == "succeeded"  # Stripe did charge
    # The session stays paying with its stock held: nobody may pay it again meanwhile.
    assert acp.get(f"/checkout_sessions/{session['id']}").get_json()["status"] == "in_progress"
    assert stock_of(app, "scarce") == 4
    return session, intent_id


def test_unknown_outcome_then_a_retry_with_a_new_token_finds_the_first_charge(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, intent_id = _charged_but_unknown(acp, app, fake_psp)

    retried = acp.complete(session["id"], "tok_mastercard")  # the agent's new token

    assert retried.status_code == 200
    body = retried.get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    assert len(fake_psp.sent("POST", INTENTS)) == 2  # the lost one and its repeat: no new one
    assert list(fake_psp.payment_intents) == [intent_id]
    assert row_of(app, session["id"]).payment_reference == intent_id
    assert stock_of(app, "scarce") == 4
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == intent_id


def test_unknown_outcome_without_a_retry_is_completed_by_the_webhook(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session, intent_id = _charged_but_unknown(acp, app, fake_psp)
    charged = fake_psp.payment_intents[intent_id]

    # The agent gave up; Stripe still tells the store about the charge it made.
    event = stripe_event(
        "payment_intent.succeeded",
        intent(session["id"], charged["amount"], intent_id),
        "evt_lost",
    )
    assert post_stripe(app.test_client(), event).get_json()["outcome"] == "completed"

    assert acp.get(f"/checkout_sessions/{session['id']}").get_json()["status"] == "completed"
    assert stock_of(app, "scarce") == 4
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"]["reference"] == intent_id


def test_a_second_payment_for_a_paid_session_is_refunded_and_flagged(
    acp, app, fake_psp: FakePSP, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    # The old double charge: the first PaymentIntent's answer was lost, the agent paid again
    # with a new token (a new key, a second PaymentIntent), and the first one's
    # payment_intent.succeeded arrives after the second completed the session.
    session = _ready(acp, ("scarce", 1))
    first = acp.complete(session["id"], "tok_visa").get_json()
    assert first["status"] == "completed"
    paid_by = row_of(app, session["id"]).payment_reference
    other = fake_psp.payment_intents[paid_by]
    duplicate = "pi_duplicate_1"
    fake_psp.payment_intents[duplicate] = {
        **other,
        "id": duplicate,
        "metadata": {"checkout_session_id": session["id"]},
    }

    with caplog.at_level(logging.ERROR):
        answer = post_stripe(
            app.test_client(),
            stripe_event(
                "payment_intent.succeeded",
                intent(session["id"], other["amount"], duplicate),
                "evt_duplicate",
            ),
        )

    assert answer.get_json() == {"received": True, "outcome": "duplicate_refunded"}
    [refund] = fake_psp.sent("POST", "/v1/refunds")
    assert refund.body["payment_intent"] == duplicate
    assert refund.body["reason"] == "duplicate"
    assert refund.headers["Idempotency-Key"] == f"shop-refund-{duplicate}"
    assert row_of(app, session["id"]).payment_reference == paid_by  # the order stands
    assert row_of(app, session["id"]).flagged == 1
    assert any("DUPLICATE PAYMENT" in r.getMessage() for r in caplog.records)
    flagged = wait_for(lambda: [o for o in sink.orders if o.get("event") == "order.flagged"])
    assert flagged[0]["flag"]["reason"] == "duplicate_payment"
    # Stripe's charge.refunded for the duplicate does not cancel the order it did not pay.
    refunded = stripe_event(
        "charge.refunded",
        {
            "id": "ch_dup",
            "object": "charge",
            "amount_refunded": other["amount"],
            "currency": "usd",
            "payment_intent": duplicate,
            "metadata": {"checkout_session_id": session["id"]},
        },
        "evt_refunded",
    )
    assert post_stripe(app.test_client(), refunded).get_json()["outcome"] == (
        "ignored_refund_of_another_payment"
    )


def test_processing_is_in_progress_until_the_signed_webhook(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _ready(acp, ("scarce", 1))
    fake_psp.next_outcomes.append("processing")
    pending = acp.complete(session["id"], "tok_visa").get_json()

    assert_acp(pending, "CheckoutSession")
    assert pending["status"] == "in_progress"
    assert stock_of(app, "scarce") == 4
    [intent_id] = fake_psp.payment_intents
    assert row_of(app, session["id"]).payment_reference == intent_id
    # A second complete while paying never charges again.
    assert acp.complete(session["id"], "tok_mastercard").get_json()["status"] == "in_progress"
    assert len(fake_psp.sent("POST", INTENTS)) == 1

    event = stripe_event(
        "payment_intent.succeeded",
        intent(session["id"], total(session), intent_id),
        "evt_processing",
    )
    answer = post_stripe(app.test_client(), event)

    assert answer.status_code == 200
    assert answer.get_json() == {"received": True, "outcome": "completed"}
    body = acp.get(f"/checkout_sessions/{session['id']}").get_json()
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    assert stock_of(app, "scarce") == 4
    [order] = wait_for(lambda: sink.orders)
    assert order["payment"] == {"provider": "stripe", "reference": intent_id}


def test_completed_session_is_never_charged_again(acp, fake_psp: FakePSP) -> None:
    session = _ready(acp)
    assert acp.complete(session["id"], "tok_visa").get_json()["status"] == "completed"
    again = acp.complete(session["id"], "tok_mastercard").get_json()
    assert again["status"] == "completed"
    assert len(fake_psp.sent("POST", INTENTS)) == 1


@pytest.mark.parametrize(
    ("env", "names"),
    [
        # An account (or version) without Shared Payment Tokens: parameter_unknown on the field.
        ({"STRIPE_API_VERSION": "2026-10-28.endive"}, "STRIPE_API_VERSION"),
        ({"STRIPE_SECRET_KEY": "sk_test_not_this_accounts"}, "STRIPE_SECRET_KEY"),
    ],
)
def test_setup_errors_are_the_merchants_not_a_declined_card(
    make_app,
    fake_psp: FakePSP,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
    names: str,
) -> None:
    app = provider_app(make_app, fake_psp, "stripe", **env)
    acp = agent(app)
    session = _ready(acp, ("scarce", 1))
    fake_psp.grant_spt("spt_setup")
    counted = metric(app.test_client(), "shop_payment_setup_errors_total", provider="stripe")
    declines = metric(app.test_client(), "shop_payment_declines_total", via="complete")
    with caplog.at_level(logging.INFO):
        response = acp.complete(session["id"], "spt_setup")

    assert response.status_code == 503
    error = response.get_json()
    assert_acp(error, "Error")
    assert (error["type"], error["code"]) == ("processing_error", "payment_provider_error")
    assert "card" not in error["message"]  # nothing tells the buyer their card failed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and names in errors[0].getMessage()
    assert "sk_test_not_this_accounts" not in caplog.text
    client = app.test_client()
    assert metric(client, "shop_payment_setup_errors_total", provider="stripe") == counted + 1
    assert metric(client, "shop_payment_declines_total", via="complete") == declines
    assert stock_of(app, "scarce") == 5
    assert acp.get(f"/checkout_sessions/{session['id']}").get_json()["status"] == (
        "ready_for_payment"
    )


def test_a_charge_that_lands_after_another_payment_completed_the_session_is_refunded(
    acp, app, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    # complete's PaymentIntent is still being created when a webhook completes the session
    # with another payment: the charge that lands second is given back, not kept.
    import threading

    session = _ready(acp, ("scarce", 1))
    fake_psp.hold = "POST /v1/payment_intents"
    answers: list[Any] = []
    paying = threading.Thread(
        target=lambda: answers.append(acp.complete(session["id"], "pm_card_visa"))
    )
    paying.start()
    assert fake_psp.held.wait(5)
    other = stripe_event(
        "payment_intent.succeeded", intent(session["id"], total(session), "pi_first"), "evt_1"
    )
    assert post_stripe(app.test_client(), other).get_json()["outcome"] == "completed"
    fake_psp.resume.set()
    paying.join(10)

    assert answers[0].get_json()["status"] == "completed"  # paid by pi_first
    [charged] = fake_psp.payment_intents
    [refund] = fake_psp.sent("POST", "/v1/refunds")
    assert refund.body["payment_intent"] == charged
    assert row_of(app, session["id"]).payment_reference == "pi_first"
    assert row_of(app, session["id"]).flagged == 1
