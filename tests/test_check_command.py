"""`flask --app app check [--online]`: every problem listed, one sentence each; exit 1 on any."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shop.cli.check import check_command, is_check_command
from tests.receiver import ERROR, ORDER_SECRET

ROOT = Path(__file__).resolve().parents[1]
# Variables a developer's shell may hold that would change what check sees.
_OURS = ("SHOP_", "ORDER_", "STRIPE_", "RAZORPAY_", "FORTER_", "FEED_", "ACP_")


@pytest.fixture
def check(shop_files, monkeypatch):
    """Return run(env=..., online=False) -> (exit code, output lines), on the test files."""
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name)

    def run(env: dict[str, str] | None = None, online: bool = False) -> tuple[int, list[str]]:
        full = {
            "SHOP_CONFIG": str(shop_files["config"]),
            "SHOP_PRODUCTS": str(shop_files["products"]),
            "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
            **(env or {}),
        }
        result = CliRunner().invoke(check_command, ["--online"] if online else [], env=full)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.exit_code, result.output.splitlines()

    return run


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_good_files_pass_and_say_what_was_checked(check, make_app):
    make_app()  # the database exists, as on a running store
    code, lines = check()
    assert code == 0
    assert lines[-1] == "no problems: safe to start or reload."
    assert any(line.startswith("ok ") and "provider test" in line for line in lines)
    assert any(line.startswith("ok ") and "products" in line for line in lines)
    assert any(line.startswith("ok ") and "reachable, writable" in line for line in lines)
    assert not [line for line in lines if line.startswith("PROBLEM")]


def test_every_problem_is_listed_one_sentence_each(check, shop_files):
    _edit(shop_files["config"], lambda c: c.update(paymentprovider="stripe", sesionTtlMinutes=5))
    _edit(shop_files["products"], lambda p: p[0].update(stock=p[0].pop("inventory", 1)))
    code, lines = check(
        {
            "STRIPE_SECRET": "sk_test_x",  # misspelled STRIPE_SECRET_KEY
            "SHOP_DATABASE_URL": f"sqlite:///{shop_files['dir']}",  # a folder, not a file
        }
    )
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1
    assert lines[-1] == f"{len(problems)} problem(s): fix them before starting or reloading."
    wanted = [
        "unknown key 'paymentprovider' at the top level",
        "did you mean 'sessionTtlMinutes'?",
        "unknown key 'stock' in product",
        "STRIPE_SECRET is not a variable shop reads; did you mean STRIPE_SECRET_KEY?",
        "SHOP_DATABASE_URL (sqlite:///",
    ]
    for words in wanted:
        assert sum(words in p for p in problems) == 1, (words, problems)
    assert len(problems) == len(wanted)


def test_a_wrong_value_and_a_bad_provider_key_are_problems(check, shop_files):
    _edit(shop_files["config"], lambda c: c.update(paymentProvider="stripe"))
    code, lines = check(
        {
            "SHOP_API_KEYS": "agent:tok",
            "STRIPE_SECRET_KEY": "pk_test_oops",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
        }
    )
    assert code == 1
    (problem,) = [line for line in lines if line.startswith("PROBLEM")]
    assert "STRIPE_SECRET_KEY is not a Stripe key" in problem


def test_flask_check_runs_on_broken_files_without_opening_the_store(shop_files):
    _edit(shop_files["config"], lambda c: c.update(paymentprovider="stripe"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS) and k != "FLASK_APP"} | {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
    }
    flask = Path(sys.executable).with_name("flask")
    done = subprocess.run(
        [str(flask), "--app", "app", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "did you mean 'paymentProvider'?" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not shop_files["db"].exists()  # check looked; it created no database


def test_online_asks_stripe_and_sends_a_signed_test_order(
    check, shop_files, fake_psp, order_receiver
):
    _edit(
        shop_files["config"],
        lambda c: c.update(paymentProvider="stripe", orderWebhookUrl=order_receiver.url),
    )
    env = {
        **fake_psp.env("stripe"),
        "SHOP_API_KEYS": "agent:tok",
        "ORDER_WEBHOOK_SECRET": ORDER_SECRET,
    }
    code, lines = check(env, online=True)
    assert code == 0, lines
    assert any("Stripe accepted STRIPE_SECRET_KEY" in line for line in lines)
    assert any("accepted the signed test order order_check_" in line for line in lines)
    assert [r.method + " " + r.path for r in fake_psp.requests] == ["GET /v1/balance"]
    (request,) = order_receiver.requests
    assert request.verified and request.json()["event"] == "order.test"


def test_online_reports_a_revoked_key_and_a_failing_receiver(
    check, shop_files, fake_psp, make_order_receiver
):
    receiver = make_order_receiver(mode=ERROR)
    _edit(
        shop_files["config"],
        lambda c: c.update(paymentProvider="razorpay", orderWebhookUrl=receiver.url),
    )
    env = {**fake_psp.env("razorpay"), "SHOP_API_KEYS": "agent:tok"}
    fake_psp.revoked_keys.add(env["RAZORPAY_KEY_ID"])
    code, lines = check({**env, "ORDER_WEBHOOK_SECRET": ORDER_SECRET}, online=True)
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1
    assert len(problems) == 2
    assert "Razorpay refused RAZORPAY_KEY_ID" in problems[0]
    assert f"orderWebhookUrl ({receiver.url}) did not take the signed test order" in problems[1]

    fake_psp.revoked_keys.clear()
    receiver.mode = "ok"
    code, lines = check({**env, "ORDER_WEBHOOK_SECRET": ORDER_SECRET}, online=True)
    assert code == 0, lines
    assert any("Razorpay accepted" in line for line in lines)


def test_online_refuses_to_send_an_unsigned_test_order(check, shop_files, order_receiver):
    _edit(shop_files["config"], lambda c: c.update(orderWebhookUrl=order_receiver.url))
    code, lines = check(online=True)
    assert code == 1
    assert any("ORDER_WEBHOOK_SECRET is not set in this environment" in line for line in lines)
    assert order_receiver.requests == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/x/.venv/bin/flask", "--app", "app", "check"], True),
        (["/x/.venv/bin/flask", "--env-file", "/etc/shop/env", "--app", "app", "check"], True),
        (["/x/.venv/bin/flask", "-A", "app", "check", "--online"], True),
        (["/x/.venv/bin/flask", "--app", "app", "orders", "check"], False),
        (["/x/.venv/bin/flask", "--app", "app", "run"], False),
        (["/x/.venv/bin/gunicorn", "app:app", "check"], False),
    ],
)
def test_only_the_check_command_skips_starting_the_store(argv, expected):
    assert is_check_command(argv) is expected


def test_a_wrong_body_timeout_is_a_problem(check):
    code, lines = check({"SHOP_BODY_TIMEOUT": "ten"})
    assert code == 1
    assert any("SHOP_BODY_TIMEOUT is 'ten'" in line for line in lines)
