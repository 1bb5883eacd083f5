"""Benchmark: what the order hand-off adds to /complete, with a fast and a 5-second receiver.

Run:  .venv/bin/python bench/complete_latency.py [--orders 20] [--clients 4] [--workers 2]

The store runs under gunicorn with orderWebhookUrl pointing at a loopback receiver (the one
the tests use). Each client thread runs create -> complete; only /complete is timed. The
receiver first answers at once, then takes --slow seconds to answer each order (within the
10 s default timeout). The hand-off runs after the commit on a background thread, so both
rows should match: /complete never waits for the merchant.

The catalog is the test one with the widget's inventory unlimited, so any number of orders
per row can be bought (the test file's 100 widgets ran out after ~48 orders per row).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gunicorn_server import gunicorn  # noqa: E402
from tests.receiver import OrderReceiver  # noqa: E402

HEADERS = {"Authorization": "Bearer demo", "API-Version": "2026-04-17"}
CART = {
    "currency": "usd",
    "capabilities": {},
    "line_items": [{"id": "widget", "quantity": 1}],
    "buyer": {"email": "bench@example.com"},
    "fulfillment_details": {
        "address": {
            "name": "B",
            "line_one": "1 Main",
            "city": "SF",
            "state": "CA",
            "country": "US",
            "postal_code": "94105",
        }
    },
}
PAYMENT = {
    "payment_data": {
        "handler_id": "card_tokenized",
        "instrument": {"type": "card", "credential": {"type": "spt", "token": "tok_visa"}},
    }
}


def _checkouts(url: str, orders: int, clients: int) -> tuple[list[float], list[str]]:
    """Run `orders` checkouts on `clients` threads; return /complete seconds and failures."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    todo = iter(range(orders))

    def checkout(http: requests.Session) -> None:
        headers = {**HEADERS, "Idempotency-Key": str(uuid.uuid4())}
        created = http.post(f"{url}/checkout_sessions", json=CART, headers=headers, timeout=30)
        if created.status_code != 201:
            raise RuntimeError(f"create answered {created.status_code}: {created.text[:120]}")
        headers = {**HEADERS, "Idempotency-Key": str(uuid.uuid4())}
        started = time.perf_counter()
        done = http.post(
            f"{url}/checkout_sessions/{created.json()['id']}/complete",
            json=PAYMENT,
            headers=headers,
            timeout=30,
        )
        elapsed = time.perf_counter() - started
        if done.status_code != 200 or done.json().get("status") != "completed":
            raise RuntimeError(f"complete answered {done.status_code}: {done.text[:120]}")
        with lock:
            latencies.append(elapsed)

    def client() -> None:
        with requests.Session() as http:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                try:
                    checkout(http)
                except (RuntimeError, requests.RequestException) as exc:
                    with lock:
                        failures.append(str(exc))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def _report(label: str, run: tuple[list[float], list[str]]) -> float:
    """Print one row; return the median in seconds."""
    latencies, failures = run
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    p95 = ms[max(int(len(ms) * 0.95) - 1, 0)]
    print(
        f"{label:<34} n={len(latencies):3d}  p50={statistics.median(ms):7.1f} ms  "
        f"p95={p95:7.1f} ms  max={ms[-1]:7.1f} ms  failed={len(failures)}"
    )
    if failures:
        print(f"  first failure: {failures[0]}")
    return statistics.median(ms) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--slow", type=float, default=5.0, help="seconds the slow receiver takes")
    args = parser.parse_args()

    receiver = OrderReceiver().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = json.loads((ROOT / "tests/data/config.json").read_text())
            config["orderWebhookUrl"] = receiver.url
            (Path(tmp) / "config.json").write_text(json.dumps(config))
            products = json.loads((ROOT / "tests/data/products.json").read_text())
            for product in products:
                if product["id"] == CART["line_items"][0]["id"]:
                    product["inventory"] = None  # unlimited: stock never ends the run early
            (Path(tmp) / "products.json").write_text(json.dumps(products))
            env = {
                "SHOP_CONFIG": f"{tmp}/config.json",
                "SHOP_PRODUCTS": f"{tmp}/products.json",
                "SHOP_DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
                "SHOP_API_KEYS": "",
                "ORDER_WEBHOOK_SECRET": receiver.secret or "",
                "ORDER_WEBHOOK_TIMEOUT": "",
                "ACP_WEBHOOK_URL": "",
                "ACP_WEBHOOK_SECRET": "",
            }
            print(
                f"gunicorn workers={args.workers} threads={args.threads}, "
                f"{args.clients} clients, {args.orders} orders per row"
            )
            with gunicorn(env, workers=args.workers, threads=args.threads) as url:
                _checkouts(url, 4, 1)  # warm up every worker's imports and connections
                runs = [_checkouts(url, args.orders, args.clients)]
                fast = _report("receiver answers at once", runs[0])
                receiver.mode, receiver.hang_seconds = "hang", args.slow
                runs.append(_checkouts(url, args.orders, args.clients))
                slow = _report(f"receiver takes {args.slow:g} s per order", runs[1])
                print(f"added by the slow receiver: p50 {(slow - fast) * 1000:+.1f} ms")
                receiver.mode = "ok"
                paid = 4 + sum(len(latencies) for latencies, _ in runs)
                print(
                    f"orders received: {len(receiver.wait_for(paid, args.slow + 5))} of {paid} paid"
                )
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
