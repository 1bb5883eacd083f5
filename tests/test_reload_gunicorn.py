"""Reloads under real gunicorn with the shipped gunicorn.conf.py: a broken file never takes
the store down once it runs; only a cold start with a broken file refuses to start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.gunicorn_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "unknown key 'stock' in product"
LIVE_STRIPE = {
    "SHOP_API_KEYS": "agent:tok",
    "STRIPE_SECRET_KEY": "sk_live_51abcdef",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "STRIPE_ACCOUNT_ID": "acct_1A2b3C4d5E6f7G8h",
}
LIVE_LINE = "Stripe is LIVE (STRIPE_SECRET_KEY is a sk_live_ key): payments move real money"


def _env(shop_files) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "STRIPE_"))}
    return env | {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
    }


@contextmanager
def _gunicorn(
    shop_files, log: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with log.open("wb") as out:
        # No --config: gunicorn reads ./gunicorn.conf.py, as it does in production.
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "app:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env=_env(shop_files) | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _price(url) is not None, 30, log)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _price(url: str) -> int | None:
    try:
        feed = requests.get(f"{url}/feeds/products.json", timeout=5).json()
    except (requests.RequestException, ValueError):
        return None
    return feed["products"][0]["variants"][0]["price"]["amount"]


def _wait(condition, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; gunicorn log:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def _workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def _set_first_product(path: Path, **change) -> None:
    products = json.loads(path.read_text())
    products[0].update(change)
    path.write_text(json.dumps(products, indent=2))


def test_hup_reloads_good_files_and_refuses_broken_ones_while_serving(shop_files, tmp_path):
    log = tmp_path / "gunicorn.log"
    products = shop_files["products"]
    first = json.loads(products.read_text())[0]
    config = json.loads(shop_files["config"].read_text())
    shop_files["config"].write_text(json.dumps({**config, "paymentProvider": "stripe"}))
    with _gunicorn(shop_files, log, LIVE_STRIPE) as (url, proc):
        assert _price(url) == first["price"]
        # A good edit: HUP picks it up (new workers, new price).
        _set_first_product(products, price=first["price"] + 100)
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: _price(url) == first["price"] + 100, 20, log)
        # Every worker start says, at WARNING (shown without any logging set up), that the
        # money is real: the two first workers and the two after the reload.
        _wait(lambda: log.read_text().count(LIVE_LINE) >= 4, 20, log)

        # A broken edit: HUP is refused with the sentence; no worker is replaced.
        booted = log.read_text().count("Booting worker")
        broken = json.loads(products.read_text())
        broken[0]["stock"] = broken[0].pop("inventory", 5)
        broken[0]["price"] = first["price"] + 999
        products.write_text(json.dumps(broken, indent=2))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: "reload refused" in log.read_text(), 20, log)
        refused = next(line for line in log.read_text().splitlines() if "reload refused" in line)
        assert SENTENCE in refused and "did you mean 'inventory'?" in refused
        for _ in range(20):
            assert _price(url) == first["price"] + 100
        assert proc.poll() is None
        assert log.read_text().count("Booting worker") == booted

        # A worker that dies meanwhile cannot start on the broken file, and says so; the
        # master stays up and the other worker serves.
        os.kill(min(_workers(proc.pid)), signal.SIGKILL)
        _wait(lambda: "cannot start this worker" in log.read_text(), 20, log)
        for _ in range(10):
            assert _price(url) == first["price"] + 100
        assert proc.poll() is None

        # Fixed: the next HUP reloads.
        fixed = json.loads(products.read_text())
        fixed[0]["inventory"] = fixed[0].pop("stock")
        fixed[0]["price"] = first["price"] + 200
        products.write_text(json.dumps(fixed, indent=2))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: _price(url) == first["price"] + 200, 20, log)
        assert proc.poll() is None


def test_a_cold_start_with_a_broken_file_refuses_with_the_sentence(shop_files, tmp_path):
    _set_first_product(shop_files["products"], stock=3)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "app:app",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=_env(shop_files),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("shop cannot start")]
    assert len(lines) == 1 and SENTENCE in lines[0]
    assert "Traceback" not in done.stderr


def test_the_directories_gunicorn_made_are_removed_when_it_stops_after_a_reload(
    shop_files, tmp_path
):
    # gunicorn runs gunicorn.conf.py again on every HUP: what it made at the first start
    # (the metrics directory, the serving marker's directory) must still be removed at stop.
    made = tmp_path / "tmp"
    made.mkdir()
    env = {"TMPDIR": str(made), "PROMETHEUS_MULTIPROC_DIR": ""}
    log = tmp_path / "gunicorn.log"
    with _gunicorn(shop_files, log, env) as (url, proc):
        assert {p.name.split("-")[1] for p in made.iterdir()} == {"metrics", "serving"}
        booted = log.read_text().count("Booting worker")
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: log.read_text().count("Booting worker") >= booted + 2, 20, log)
        assert _price(url) is not None
    assert proc.returncode is not None
    assert list(made.iterdir()) == []
