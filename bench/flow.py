"""Benchmark: the create -> update -> complete flow under gunicorn, beside a bare Flask app.

Run:  .venv/bin/python bench/flow.py [--clients 32] [--seconds 10] [--workers 2] [--threads 4]

Both servers run under the same gunicorn settings in the same run, and the same client loop
(threads with keep-alive connections) drives them, so the ratio of their req/s is the number
to watch (target: flow >= 35% of bare; p95 of complete < 50 ms at 32 clients).
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

HEADERS = {"Authorization": "Bearer demo", "API-Version": "2026-04-17",
           "Content-Type": "application/json"}
CREATE = json.dumps({"currency": "usd", "capabilities": {},
                     "line_items": [{"id": "widget", "quantity": 1}],
                     "buyer": {"email": "bench@example.com"}})
UPDATE = json.dumps({"fulfillment_details": {"address": {
    "name": "B", "line_one": "1 Main", "city": "SF", "state": "CA", "country": "US",
    "postal_code": "94105"}}})
COMPLETE = json.dumps({"payment_data": {"handler_id": "card_tokenized", "instrument": {
    "type": "card", "credential": {"type": "spt", "token": "tok_visa"}}}})


def _run(clients: int, seconds: float, step) -> dict[str, list[float]]:
    """Run `step(session, latencies)` in a loop on `clients` threads for `seconds`."""
    stop = time.perf_counter() + seconds
    latencies: dict[str, list[float]] = {}
    lock = threading.Lock()

    def worker() -> None:
        local: dict[str, list[float]] = {}
        with requests.Session() as http:
            while time.perf_counter() < stop:
                step(http, local)
        with lock:
            for name, values in local.items():
                latencies.setdefault(name, []).extend(values)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def _timed(local: dict[str, list[float]], name: str, call):
    start = time.perf_counter()
    response = call()
    local.setdefault(name, []).append(time.perf_counter() - start)
    return response


def _report(label: str, latencies: dict[str, list[float]], seconds: float) -> float:
    total = sum(len(v) for v in latencies.values())
    rps = total / seconds
    print(f"{label}: {rps:8.0f} req/s over {total} requests")
    for name, values in latencies.items():
        values = sorted(values)
        p50 = statistics.median(values) * 1000
        p95 = values[int(len(values) * 0.95) - 1] * 1000
        print(f"  {name:<9} n={len(values):6d}  p50={p50:6.1f} ms  p95={p95:6.1f} ms")
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        products = json.loads((ROOT / "tests/data/products.json").read_text())
        products[0]["inventory"] = 10_000_000
        (Path(tmp) / "products.json").write_text(json.dumps(products))
        env = {"SHOP_CONFIG": str(ROOT / "tests/data/config.json"),
               "SHOP_PRODUCTS": str(Path(tmp) / "products.json"),
               "SHOP_DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "SHOP_API_KEYS": ""}
        settings = dict(workers=args.workers, threads=args.threads)
        print(f"gunicorn workers={args.workers} threads={args.threads}, {args.clients} clients, "
              f"{args.seconds:.0f} s each")

        with gunicorn({}, app="bench.bare_app:app", **settings) as url:
            bare = _run(args.clients, args.seconds, lambda http, local: _timed(
                local, "bare", lambda: http.post(f"{url}/bare", data="{}", headers=HEADERS)))
        bare_rps = _report("bare flask", bare, args.seconds)

        def flow(http: requests.Session, local: dict[str, list[float]]) -> None:
            def post(path: str, body: str) -> requests.Response:
                return http.post(f"{url}{path}", data=body,
                                 headers={**HEADERS, "Idempotency-Key": str(uuid.uuid4())})

            created = _timed(local, "create", lambda: post("/checkout_sessions", CREATE))
            session_id = created.json()["id"]
            _timed(local, "update", lambda: post(f"/checkout_sessions/{session_id}", UPDATE))
            done = _timed(local, "complete",
                          lambda: post(f"/checkout_sessions/{session_id}/complete", COMPLETE))
            assert done.json()["status"] == "completed", done.text

        with gunicorn(env, **settings) as url:
            shop = _run(args.clients, args.seconds, flow)
        shop_rps = _report("checkout flow", shop, args.seconds)
        print(f"flow / bare = {shop_rps / bare_rps:.0%} (target >= 35%)")


if __name__ == "__main__":
    main()
