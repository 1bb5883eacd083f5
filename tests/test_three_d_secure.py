"""3-D Secure as ACP 2026-04-17 defines it, on a Stripe store, with the spec's own examples.

The issuer wants authentication (Stripe answers `requires_action`): the store answers
`authentication_required` with `authentication_metadata`; the agent's 3DS server authenticates
and the agent completes again with `authentication_result`, which goes to Stripe as 3DS
performed elsewhere (`payment_method_options[card][three_d_secure]`). Denied outcomes charge
nothing and leave the session payable by another card.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADDRESS_CA, RecordingSink, assert_acp, cart, payment
from tests.fake_psp import FakePSP
from tests.psp_app import agent, provider_app, stock_of, wait_for

SPEC = Path(__file__).resolve().parents[1] / "shop" / "spec" / "acp" / "2026-04-17"
EXAMPLES = json.loads((SPEC / "examples.agentic_checkout.json").read_text())
INTENTS = "/v1/payment_intents"
THREE_DS = {
    "acquirerBin": "123456",  # the spec example's acquirer, so its metadata must match
    "acquirerCountry": "US",
    "acquirerMerchantId": "merchant_789",
    "merchantName": "Test Merchant",
    "requestorId": "requestor_42",
    "challenge": "preferred",
}


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def app(make_app, fake_psp: FakePSP, sink: RecordingSink):
    return make_app(
        config={"paymentProvider": "stripe", "threeDS": THREE_DS},
        env={"SHOP_API_KEYS": "agent:secret-token", **fake_psp.env("stripe")},
        sink=sink,
    )


@pytest.fixture
def acp(app):
    return agent(app)


def _ready(acp) -> dict[str, Any]:
    body = acp.create(cart(("scarce", 1), address=ADDRESS_CA)).get_json()
    assert body["status"] == "ready_for_payment"
    return body


def _needs_authentication(acp, fake_psp: FakePSP, token: str) -> dict[str, Any]:
    """Complete with a card whose issuer wants 3DS: authentication_required."""
    fake_psp.grant_spt(token, "threeDSecure2Required")
    session = _ready(acp)
    body = acp.complete(session["id"], token).get_json()
    assert_acp(body, "CheckoutSession")
    assert body["status"] == "authentication_required"
    return body


def test_the_handler_advertises_3ds_with_the_acquirer_details(acp) -> None:
    [handler] = _ready(acp)["capabilities"]["payment"]["handlers"]
    assert handler["config"]["supports_3ds"] is True
    assert handler["config"]["3ds_versions"] == ["2.1.0", "2.2.0"]


def test_a_card_that_needs_3ds_answers_authentication_required(app, acp, fake_psp: FakePSP) -> None:
    body = _needs_authentication(acp, fake_psp, "spt_3ds_token_001")

    example = EXAMPLES["checkout_session_authentication_required"]["authentication_metadata"]
    assert body["authentication_metadata"] == example  # the spec's example, from our config
    [message] = body["messages"]
    assert (message["code"], message["param"]) == ("requires_3ds", "$.authentication_result")
    [intent_id] = fake_psp.payment_intents  # Stripe's own challenge cannot run: canceled
    assert fake_psp.payment_intents[intent_id]["status"] == "canceled"
    assert stock_of(app, "scarce") == 5
    # A complete without authentication_result is the spec's error_400_requires_3ds.
    again = acp.complete(body["id"], "spt_3ds_token_001")
    assert again.status_code == 400
    error = again.get_json()
    assert (error["code"], error["param"]) == ("requires_3ds", "$.authentication_result")
    assert len(fake_psp.sent("POST", INTENTS)) == 1


def test_complete_with_the_specs_authentication_result_pays_through_stripe(
    app, acp, fake_psp: FakePSP, sink: RecordingSink
) -> None:
    session = _needs_authentication(acp, fake_psp, "spt_3ds_token_001")
    request = copy.deepcopy(EXAMPLES["complete_session_with_authentication_result_request"])

    response = acp.post(f"/checkout_sessions/{session['id']}/complete", request)

    body = response.get_json()
    assert response.status_code == 200, body
    assert_acp(body, "CheckoutSessionWithOrder")
    assert body["status"] == "completed"
    assert "authentication_metadata" not in body
    first, second = fake_psp.sent("POST", INTENTS)
    details = request["authentication_result"]["outcome_details"]
    assert second.body["payment_method_options"] == {
        "card": {
            "three_d_secure": {
                "cryptogram": details["three_ds_cryptogram"],
                "electronic_commerce_indicator": details["electronic_commerce_indicator"],
                "transaction_id": details["transaction_id"],
                "version": details["version"],
            }
        }
    }
    # An authenticated attempt is a new attempt: a new idempotency key, the same SPT version.
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    assert second.headers["Stripe-Version"] == "2026-04-22.preview"
    assert stock_of(app, "scarce") == 4
    assert wait_for(lambda: sink.orders)


def test_the_specs_denied_authentication_charges_nothing_and_another_card_pays(
    app, acp, fake_psp: FakePSP
) -> None:
    session = _needs_authentication(acp, fake_psp, "spt_3ds_denied_001")
    request = copy.deepcopy(EXAMPLES["complete_session_with_denied_authentication_request"])

    body = acp.post(f"/checkout_sessions/{session['id']}/complete", request).get_json()

    assert_acp(body, "CheckoutSession")
    assert body["status"] == "ready_for_payment"
    [message] = body["messages"]
    assert message["code"] == "requires_3ds" and "denied" in message["content"]
    assert len(fake_psp.sent("POST", INTENTS)) == 1  # the first attempt only
    assert stock_of(app, "scarce") == 5

    assert acp.complete(session["id"], "pm_card_visa").get_json()["status"] == "completed"


@pytest.mark.parametrize("outcome", ["abandoned", "rejected"])
def test_other_failed_outcomes_leave_the_session_payable(acp, fake_psp, outcome) -> None:
    session = _needs_authentication(acp, fake_psp, "spt_3ds_other")
    body = payment("spt_3ds_other")
    body["authentication_result"] = {"outcome": outcome}
    answer = acp.post(f"/checkout_sessions/{session['id']}/complete", body).get_json()
    assert answer["status"] == "ready_for_payment"
    assert answer["messages"][0]["code"] == "requires_3ds"


def test_an_authenticated_result_without_its_details_is_a_400(acp, fake_psp) -> None:
    session = _needs_authentication(acp, fake_psp, "spt_3ds_bad")
    body = payment("spt_3ds_bad")
    body["authentication_result"] = {"outcome": "authenticated"}
    response = acp.post(f"/checkout_sessions/{session['id']}/complete", body)
    assert response.status_code == 400
    assert response.get_json()["param"].startswith("$.authentication_result.outcome_details")


def test_without_threeds_config_the_card_is_refused_and_says_why(make_app, fake_psp) -> None:
    app = provider_app(make_app, fake_psp, "stripe")
    acp = agent(app)
    [handler] = _ready(acp)["capabilities"]["payment"]["handlers"]
    assert handler["config"]["supports_3ds"] is False
    session = _ready(acp)
    body = acp.complete(session["id"], "tok_threeDSecure2Required").get_json()
    assert body["status"] == "ready_for_payment"
    [message] = body["messages"]
    assert message["code"] == "requires_3ds" and "3-D Secure" in message["content"]
