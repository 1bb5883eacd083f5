"""Benchmark: CPU per request of the create -> update -> complete flow in one process.

Run:  .venv/bin/python bench/flow_cpu.py [--flows 600] [--profile 40] [--receiver]

No gunicorn: the flow runs through Flask's test client on one thread, and
`time.process_time` counts the CPU it took (so load from other processes matters less than
in bench/flow.py). Use it to compare two versions of a change; the test client itself costs
~0.1 ms a request. `--profile N` then runs the flows again under cProfile and prints the N
functions with the most time of their own (`--dump FILE` also writes them for pstats).
Same catalog and config as bench/flow.py.

`--receiver` sets orderWebhookUrl (signed) to bench/receiver.py in its own process, so each
order is also handed off by this process's hand-off thread; "CPU per order" then counts the
whole process (every thread) from the first flow until the last order arrived, and the
profile covers the hand-off thread too.
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
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.flow import COMPLETE, CREATE, HEADERS, UPDATE, receiver_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--receiver", action="store_true", help="hand orders to a receiver")
    parser.add_argument("--dump", metavar="FILE", help="with --profile: also write the pstats")
    args = parser.parse_args()
    secret = "whsec_bench_" + uuid.uuid4().hex

    with tempfile.TemporaryDirectory() as tmp, receiver_process(secret) as receiver:
        products = json.loads((ROOT / "tests/data/products.json").read_text())
        products[0]["inventory"] = 100_000_000
        (Path(tmp) / "products.json").write_text(json.dumps(products))
        config = json.loads((ROOT / "tests/data/config.json").read_text())
        if args.receiver:
            config["orderWebhookUrl"] = receiver.url
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        os.environ.update(
            SHOP_CONFIG=str(Path(tmp) / "config.json"),
            SHOP_PRODUCTS=str(Path(tmp) / "products.json"),
            SHOP_DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
            SHOP_API_KEYS="",
            ORDER_WEBHOOK_SECRET=secret if args.receiver else "",
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

        def arrived(count: int) -> None:
            if args.receiver:
                got = receiver.wait_for(count, timeout=60)
                if got["orders"] < count or got["bad_signatures"]:
                    raise SystemExit(f"the receiver got {got} of {count} orders")

        for _ in range(args.warmup):
            flow()
        arrived(args.warmup)
        spent.update(create=0.0, update=0.0, complete=0.0)
        started = time.process_time()
        for _ in range(args.flows):
            flow()
        arrived(args.warmup + args.flows)
        whole = time.process_time() - started
        per_request = sum(spent.values()) / (3 * args.flows) * 1000
        steps = ", ".join(f"{name} {s / args.flows * 1000:.3f}" for name, s in spent.items())
        print(f"CPU per request: {per_request:.3f} ms ({steps} ms)")
        print(
            f"CPU per order, the whole process{' with its hand-offs' if args.receiver else ''}: "
            f"{whole / args.flows * 1000:.3f} ms"
        )
        if args.profile:
            profiler = cProfile.Profile(time.thread_time)  # CPU, not waiting
            threads: list[cProfile.Profile] = []

            def profile_thread(*_: object) -> None:
                # A thread started from now on (the hand-off thread) gets a profiler of its own.
                sys.setprofile(None)
                threads.append(cProfile.Profile(time.thread_time))
                threads[-1].enable()

            _restart_hand_off_thread()  # so that it starts again with a profiler
            threading.setprofile(profile_thread)
            profiler.enable()
            for _ in range(args.flows):
                flow()
            arrived(args.warmup + 2 * args.flows)
            profiler.disable()
            threading.setprofile(None)  # type: ignore[arg-type]
            stats = pstats.Stats(profiler)
            for thread in threads:
                stats.add(thread)
            if args.dump:
                stats.dump_stats(args.dump)
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats("shop/orders", args.profile)


def _restart_hand_off_thread() -> None:
    """Let the idle hand-off thread exit now; the next order starts a new one."""
    from shop.orders import courier

    hand_off = courier._COURIER
    with hand_off._cond:
        hand_off.IDLE_SECONDS = 0.0
        hand_off._cond.notify_all()
    while hand_off._thread is not None:
        time.sleep(0.01)
    del hand_off.IDLE_SECONDS


if __name__ == "__main__":
    main()
