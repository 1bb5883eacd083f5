"""Benchmark: CPU per request of the create -> update -> complete flow in one process.

Run:  .venv/bin/python bench/flow_cpu.py [--flows 600] [--profile 40]

No gunicorn and no sockets: the flow runs through Flask's test client on one thread, and
`time.process_time` counts the CPU it took (so load from other processes matters less than
in bench/flow.py). Use it to compare two versions of a change; the test client itself costs
~0.1 ms a request. `--profile N` then runs the flows again under cProfile and prints the N
functions with the most time of their own. Same catalog and config as bench/flow.py.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.flow import COMPLETE, CREATE, UPDATE  # noqa: E402

HEADERS = {
    "Authorization": "Bearer demo",
    "API-Version": "2026-04-17",
    "Content-Type": "application/json",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        products = json.loads((ROOT / "tests/data/products.json").read_text())
        products[0]["inventory"] = 100_000_000
        (Path(tmp) / "products.json").write_text(json.dumps(products))
        os.environ.update(
            SHOP_CONFIG=str(ROOT / "tests/data/config.json"),
            SHOP_PRODUCTS=str(Path(tmp) / "products.json"),
            SHOP_DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
            SHOP_API_KEYS="",
        )
        logging.disable(logging.WARNING)  # LogSink's line per order, and the demo warnings
        from shop import create_app

        client = create_app().test_client()
        spent = {"create": 0.0, "update": 0.0, "complete": 0.0}

        def post(name: str, path: str, body: bytes) -> bytes:
            headers = {**HEADERS, "Idempotency-Key": str(uuid.uuid4())}
            start = time.process_time()
            response = client.post(path, data=body, headers=headers)
            spent[name] += time.process_time() - start
            if response.status_code >= 300:
                raise SystemExit(f"{name} answered {response.status_code}: {response.data!r}")
            return response.data

        def flow() -> None:
            session_id = json.loads(post("create", "/checkout_sessions", CREATE))["id"]
            post("update", f"/checkout_sessions/{session_id}", UPDATE)
            done = post("complete", f"/checkout_sessions/{session_id}/complete", COMPLETE)
            if json.loads(done)["status"] != "completed":
                raise SystemExit(f"complete did not complete: {done!r}")

        for _ in range(args.warmup):
            flow()
        spent.update(create=0.0, update=0.0, complete=0.0)
        for _ in range(args.flows):
            flow()
        per_request = sum(spent.values()) / (3 * args.flows) * 1000
        steps = ", ".join(f"{name} {s / args.flows * 1000:.3f}" for name, s in spent.items())
        print(f"CPU per request: {per_request:.3f} ms ({steps} ms)")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.flows):
                flow()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
