"""Commands run with the store's environment: `--env-file`, and no unsigned orders by accident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FROM_CONFIG, cart, join_deliveries
from tests.test_order_delivery import _checkout

ROOT = Path(__file__).resolve().parents[1]


def test_replay_without_the_secret_refuses_instead_of_sending_unsigned(make_app, order_receiver):
    app = make_app(
        config={"orderWebhookUrl": order_receiver.url},
        env={"ORDER_WEBHOOK_SECRET": order_receiver.secret},
        sink=FROM_CONFIG,
    )
    body, _ = _checkout(app, cart())
    join_deliveries()
    assert len(order_receiver.requests) == 1
    # The shell: the same files and database, but not the server's environment.
    shell = make_app(config={"orderWebhookUrl": order_receiver.url}, sink=FROM_CONFIG)
    refused = shell.test_cli_runner().invoke(args=["orders", "replay", body["id"]])
    assert refused.exit_code == 1
    assert "ORDER_WEBHOOK_SECRET is not set in this shell" in refused.output
    assert "--env-file /etc/shop/env" in refused.output
    assert len(order_receiver.requests) == 1  # nothing was sent
    signed = app.test_cli_runner().invoke(args=["orders", "replay", body["id"]])
    assert signed.exit_code == 0, signed.output
    assert [r.verified for r in order_receiver.requests] == [True, True]


def test_commands_read_the_env_file_the_service_uses(shop_files, tmp_path):
    # The format of systemd's EnvironmentFile (deploy/shop.service): NAME=value lines.
    env_file = tmp_path / "env"
    env_file.write_text(
        "# /etc/shop/env\n"
        f"SHOP_CONFIG={shop_files['config']}\n"
        f"SHOP_PRODUCTS={shop_files['products']}\n"
        f"SHOP_DATABASE_URL=sqlite:///{shop_files['db']}\n"
        "SHOP_API_KEYS=agent:from-the-env-file\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "FLASK_"))}
    flask = str(Path(sys.executable).with_name("flask"))
    done = subprocess.run(
        [flask, "--env-file", str(env_file), "--app", "app", "check"],
        cwd=tmp_path,  # not the project directory: the env file says where the files are
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 API key(s)" in done.stdout  # SHOP_API_KEYS came from the file: not demo mode
    assert str(shop_files["config"]) in done.stdout
