"""`flask --app app webhooks simulate`: signed provider events reach a real running store."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from shop.cli.simulate import EVENTS, SessionFacts, SimulationError, build_event
from shop.payments import EventKind
from shop.payments.offline import DEMO_WEBHOOK_SECRET, TestProvider
from shop.payments.razorpay import RazorpayProvider
from shop.payments.stripe import StripeProvider
from tests.conftest import API_VERSION, cart, payment
from tests.fake_psp import (
    RAZORPAY_WEBHOOK_SECRET,
    STRIPE_WEBHOOK_SECRET,
    FakePSP,
    provider_settings,
)
from tests.gunicorn_server import free_port, gunicorn

TOKEN = "secret-token"
KINDS = {
    "payment_intent.succeeded": EventKind.PAID,
    "payment_intent.payment_failed": EventKind.FAILED,
    "charge.dispute.created": EventKind.DISPUTED,
    "payment.captured": EventKind.PAID,
    "order.paid": EventKind.PAID,
    "payment.failed": EventKind.FAILED,
    "payment.dispute.created": EventKind.DISPUTED,
    "charge.refunded": EventKind.REFUNDED,
    "refund.processed": EventKind.REFUNDED,
    "payment.succeeded": EventKind.PAID,
    "payment.disputed": EventKind.DISPUTED,
    "payment.refunded": EventKind.REFUNDED,
}


def _store_env(shop_files: dict[str, Path], fake_psp: FakePSP, provider: str) -> dict[str, str]:
    """Point shop_files' config at `provider` and return the store's environment."""
    config = json.loads(shop_files["config"].read_text())
    config["paymentProvider"] = provider
    if provider == "razorpay":
        config["currency"] = "inr"
    shop_files["config"].write_text(json.dumps(config))
    return {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": f"agent:{TOKEN}",
        **(fake_psp.env(provider) if provider != "test" else {}),
    }


class Store:
    """A gunicorn store and the CLI of an app built on the same files, database and secrets."""

    def __init__(self, url: str, env: dict[str, str], make_app: Any) -> None:
        self.url, self.env, self._make_app = url, env, make_app

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {TOKEN}",
            "API-Version": API_VERSION,
            "Idempotency-Key": str(uuid.uuid4()),
        }

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self.url + path, json=body, headers=self._headers(), timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def session(self, session_id: str) -> dict[str, Any]:
        return requests.get(
            f"{self.url}/checkout_sessions/{session_id}", headers=self._headers(), timeout=10
        ).json()

    def simulate(self, *args: str, url: str | None = None, **env: str) -> Any:
        app = self._make_app(env={**self.env, **env})
        return app.test_cli_runner().invoke(
            args=["webhooks", "simulate", *args, "--url", url or self.url]
        )


@pytest.fixture
def start_store(shop_files, fake_psp, make_app):
    """Return a context manager: `with start_store(provider) as store:` runs gunicorn."""

    @contextmanager
    def start(provider: str) -> Iterator[Store]:
        env = _store_env(shop_files, fake_psp, provider)
        with gunicorn(env, workers=1, threads=4) as url:
            yield Store(url, env, make_app)

    return start


def test_stripe_events_drive_a_running_store(start_store, fake_psp):
    with start_store("stripe") as store:
        created = store.post("/checkout_sessions", cart(("widget", 1)))
        assert created["status"] == "ready_for_payment"
        session_id = created["id"]
        fake_psp.next_outcomes.append("processing")
        pending = store.post(f"/checkout_sessions/{session_id}/complete", payment("tok_visa"))
        assert pending["status"] == "in_progress"

        wrong = store.simulate(
            "stripe",
            "payment_intent.succeeded",
            "--session",
            session_id,
            STRIPE_WEBHOOK_SECRET="whsec_not_the_stores",
        )
        assert wrong.exit_code == 1
        assert " -> 400 " in wrong.output and "signature verification failed" in wrong.output
        assert store.session(session_id)["status"] == "in_progress"

        paid = store.simulate(
            "stripe",
            "payment_intent.succeeded",
            "--session",
            session_id,
            "--event-id",
            "evt_staging_1",
        )
        assert paid.exit_code == 0, paid.output
        assert paid.output.count("\n") == 1
        assert " -> 200 " in paid.output and '"outcome":"completed"' in paid.output
        done = store.session(session_id)
        assert done["status"] == "completed"
        assert done["order"]["id"] == f"order_{session_id}"
        refunded = store.simulate("stripe", "charge.refunded", "--session", session_id)
        assert '"outcome":"canceled"' in refunded.output, refunded.output

        again = store.simulate(
            "stripe",
            "payment_intent.succeeded",
            "--session",
            session_id,
            "--event-id",
            "evt_staging_1",
        )
        assert '"outcome":"duplicate"' in again.output

        other = store.post("/checkout_sessions", cart(("widget", 1)))["id"]
        fake_psp.next_outcomes.append("processing")
        store.post(f"/checkout_sessions/{other}/complete", payment("tok_visa"))
        failed = store.simulate("stripe", "payment_intent.payment_failed", "--session", other)
        assert '"outcome":"payment_failed"' in failed.output, failed.output
        reopened = store.session(other)
        assert reopened["status"] == "ready_for_payment"
        assert reopened["messages"][0]["code"] == "payment_declined"


def test_razorpay_events_drive_a_running_store(start_store):
    with start_store("razorpay") as store:
        body = cart(("ebook-single", 1), address=None, currency="inr")
        first, second = (store.post("/checkout_sessions", body)["id"] for _ in range(2))
        assert store.session(first)["status"] == "ready_for_payment"

        captured = store.simulate("razorpay", "payment.captured", "--session", first)
        assert '"outcome":"completed"' in captured.output, captured.output
        assert store.session(first)["status"] == "completed"
        disputed = store.simulate("razorpay", "payment.dispute.created", "--session", first)
        assert '"outcome":"flagged"' in disputed.output, disputed.output

        paid = store.simulate("razorpay", "order.paid", "--session", second)
        assert '"outcome":"completed"' in paid.output, paid.output
        refunded = store.simulate("razorpay", "refund.processed", "--session", second)
        assert '"outcome":"canceled"' in refunded.output, refunded.output

        wrong = store.simulate(
            "razorpay",
            "payment.captured",
            "--session",
            second,
            RAZORPAY_WEBHOOK_SECRET="not_the_stores",
        )
        assert wrong.exit_code == 1 and " -> 400 " in wrong.output


def test_test_provider_events_are_signed_and_drive_a_running_store(start_store):
    with start_store("test") as store:
        session_id = store.post("/checkout_sessions", cart(("widget", 1)))["id"]
        pending = store.post(f"/checkout_sessions/{session_id}/complete", payment("tok_pending"))
        assert pending["status"] == "in_progress"

        # Unsigned, or signed with another secret: no free "mark paid" button.
        unsigned = requests.post(
            f"{store.url}/webhooks/test",
            json={"id": "evt_x", "type": "payment.succeeded", "session_id": session_id},
            timeout=10,
        )
        assert unsigned.status_code == 400
        wrong = store.simulate(
            "test", "payment.succeeded", "--session", session_id, TEST_WEBHOOK_SECRET="guess"
        )
        assert wrong.exit_code == 1 and " -> 400 " in wrong.output
        assert store.session(session_id)["status"] == "in_progress"

        # The store has no TEST_WEBHOOK_SECRET: both sides use the documented demo secret.
        paid = store.simulate("test", "payment.succeeded", "--session", session_id)
        assert '"outcome":"completed"' in paid.output, paid.output
        assert store.session(session_id)["status"] == "completed"
        refunded = store.simulate("test", "payment.refunded", "--session", session_id)
        assert '"outcome":"canceled"' in refunded.output, refunded.output


# ------------------------------------------------------------ clear errors, no store needed


@pytest.fixture
def stripe_cli(make_app, fake_psp):
    """Invoke `webhooks simulate` on a Stripe-configured app (nothing listens on --url)."""

    def invoke(*args: str, config: dict[str, Any] | None = None, **env: str) -> Any:
        app = make_app(
            config=config or {"paymentProvider": "stripe"},
            env={"SHOP_API_KEYS": f"agent:{TOKEN}", **fake_psp.env("stripe"), **env},
        )
        return app.test_cli_runner().invoke(args=["webhooks", "simulate", *args])

    return invoke


@pytest.fixture
def in_progress_session(make_app, fake_psp) -> str:
    app = make_app(
        config={"paymentProvider": "stripe"},
        env={"SHOP_API_KEYS": f"agent:{TOKEN}", **fake_psp.env("stripe")},
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}", "API-Version": API_VERSION}
    session_id = client.post(
        "/checkout_sessions", json=cart(), headers={**headers, "Idempotency-Key": "k1"}
    ).get_json()["id"]
    fake_psp.next_outcomes.append("processing")
    client.post(
        f"/checkout_sessions/{session_id}/complete",
        json=payment("tok_visa"),
        headers={**headers, "Idempotency-Key": "k2"},
    )
    return session_id


def test_nothing_listening_is_one_sentence(stripe_cli, in_progress_session):
    url = f"http://127.0.0.1:{free_port()}"
    result = stripe_cli(
        "stripe", "payment_intent.succeeded", "--session", in_progress_session, "--url", url
    )
    assert result.exit_code == 1
    assert f"nothing is listening on {url}" in result.output
    assert "gunicorn app:app" in result.output
    assert "Traceback" not in result.output


def test_unknown_session_is_one_sentence(stripe_cli):
    result = stripe_cli("stripe", "payment_intent.succeeded", "--session", "cs_nope")
    assert result.exit_code == 1
    assert "no checkout session has the id 'cs_nope'" in result.output


def test_unknown_event_lists_the_supported_ones(stripe_cli):
    result = stripe_cli("stripe", "payment.captured", "--session", "cs_x")
    assert result.exit_code == 2
    for event in EVENTS["stripe"]:
        assert event in result.output


def test_missing_secret_names_the_variable(stripe_cli, monkeypatch):
    monkeypatch.delenv("RAZORPAY_WEBHOOK_SECRET", raising=False)
    result = stripe_cli("razorpay", "payment.captured", "--session", "cs_x")
    assert result.exit_code == 1
    assert "RAZORPAY_WEBHOOK_SECRET is not set" in result.output


def test_live_keys_are_refused(stripe_cli):
    result = stripe_cli(
        "stripe",
        "payment_intent.succeeded",
        "--session",
        "cs_x",
        STRIPE_SECRET_KEY="sk_live_abc",
        STRIPE_ACCOUNT_ID="acct_live",
    )
    assert result.exit_code == 1
    assert "live" in result.output


# ------------------------------------------------------------ what is sent


class _Capture(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, dict(self.headers.items()), raw))  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def capture() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_amount_and_event_id_options_reach_the_signed_event(
    stripe_cli, in_progress_session, capture, fake_psp, tmp_path
):
    url = f"http://127.0.0.1:{capture.server_address[1]}"
    result = stripe_cli(
        "stripe",
        "payment_intent.succeeded",
        "--session",
        in_progress_session,
        "--url",
        url,
        "--amount",
        "1",
        "--event-id",
        "evt_mismatch",
    )
    assert result.exit_code == 0, result.output
    assert " -> 202 " in result.output
    ((path, headers, raw),) = capture.seen
    assert path == "/webhooks/stripe"
    event = StripeProvider(provider_settings(fake_psp, "stripe", tmp_path)).parse_webhook(
        raw, headers
    )
    assert (event.id, event.amount, event.session_id) == ("evt_mismatch", 1, in_progress_session)
    assert event.reference.startswith("pi_")


# ------------------------------------------------------------ every event parses for real


@pytest.mark.parametrize(
    ("provider", "event_type"), [(p, e) for p, events in EVENTS.items() for e in events]
)
def test_every_simulated_event_parses_through_the_provider(
    provider, event_type, fake_psp, tmp_path
):
    if provider == "test":
        real = TestProvider()
        facts = SessionFacts("cs_sim", 2999, "usd", payment_reference="test_pay_1")
        signed = build_event(provider, event_type, facts, DEMO_WEBHOOK_SECRET, event_id="evt_1")
        event = real.parse_webhook(signed.body, signed.headers)
        assert (event.id, event.kind, event.session_id) == ("evt_1", KINDS[event_type], "cs_sim")
        return
    settings = provider_settings(fake_psp, provider, tmp_path)
    if provider == "stripe":
        real = StripeProvider(settings)
        facts = SessionFacts("cs_sim", 2999, "usd", payment_reference="pi_123")
        secret = STRIPE_WEBHOOK_SECRET
    else:
        real = RazorpayProvider(settings)
        order = real.prepare("cs_sim", 49_900, "inr", None)
        facts = SessionFacts("cs_sim", 49_900, "inr", provider_order_id=order)
        secret = RAZORPAY_WEBHOOK_SECRET
    signed = build_event(provider, event_type, facts, secret, event_id="evt_1")
    event = real.parse_webhook(signed.body, signed.headers)
    assert (event.type, event.kind) == (event_type, KINDS[event_type])
    # Razorpay's event id header is unsigned: the store names the event by its signed body.
    assert event.id == "evt_1" if provider == "stripe" else event.id.startswith("signed_")
    assert event.reference == (facts.payment_reference or event.reference)
    if event.kind != EventKind.DISPUTED:
        assert (event.session_id, event.amount) == ("cs_sim", facts.amount)
    if provider == "razorpay":
        assert event.session_id == "cs_sim"  # read from our order's notes at the (fake) PSP


def test_build_event_refuses_an_empty_secret_and_unknown_events():
    facts = SessionFacts("cs_sim", 100, "usd")
    with pytest.raises(SimulationError, match="STRIPE_WEBHOOK_SECRET"):
        build_event("stripe", "payment_intent.succeeded", facts, "")
    with pytest.raises(SimulationError, match=r"payment_intent\.succeeded"):
        build_event("stripe", "refund.processed", facts, "whsec")
    with pytest.raises(SimulationError, match="no Razorpay order"):
        build_event("razorpay", "payment.captured", facts, "secret")
