"""Benchmark: the create -> update -> complete flow under gunicorn, beside a bare Flask app.

Run:  .venv/bin/python bench/flow.py [--clients 32] [--seconds 10] [--rounds 3]
                                     [--workers 4] [--threads 1] [--client-procs 1]
                                     [--no-receiver]

The store runs as merchants run it: `orderWebhookUrl` points at a minimal receiver in its
own process on loopback (bench/receiver.py), and orders are signed with
ORDER_WEBHOOK_SECRET. Beside it, the same store with no orderWebhookUrl (LogSink: orders
only logged, as a fresh install runs) and a bare Flask app, all under the same gunicorn
settings; the same load generator drives them in alternating rounds, so the ratio of a
store's req/s to the bare app's within a round is the number to watch (targets: flow >= 35%
of bare; p95 of complete < 50 ms at 32 clients; with the receiver, server CPU per completed
order at most 0.5 ms above the LogSink store's, and every order delivered within 2 s of the
load stopping). `--no-receiver` measures only the LogSink store.

For the receiver's store each round also reports deliveries: how many of the orders
completed in the round had arrived when the load stopped, and how long after it stopped the
last one arrived. Server CPU per completed order counts the workers' CPU from the start of
the round until the last order arrived, so the hand-off's work is in it wherever it fell.

The default settings are the deployment the README recommends on 2 cores: 4 sync workers
(`--threads 1`) behind nginx. A sync worker answers one request per connection and closes
it, which is what it gets behind nginx, which keeps the clients' connections alive itself.
`--threads 4` (gthread) measures gunicorn serving clients directly with keep-alive instead.

The load generator is a raw HTTP/1.1 client on asyncio (keep-alive connections, one task per
client, no third-party HTTP library) so that it costs the shared CPUs as little as possible:
a heavy client shrinks both numbers and flatters the ratio. Each round prints the client's
and the server's CPU milliseconds per request, and the load average, so a reader can tell a
busy machine from a slow server. The flow runs on the offline `test` provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gunicorn_server import free_port, gunicorn_process  # noqa: E402

HEADERS = {
    "Authorization": "Bearer demo",
    "API-Version": "2026-04-17",
    "Content-Type": "application/json",
}
API_HEADERS = "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items()).encode()
CREATE = json.dumps(
    {
        "currency": "usd",
        "capabilities": {},
        "line_items": [{"id": "widget", "quantity": 1}],
        "buyer": {"email": "bench@example.com"},
    }
).encode()
UPDATE = json.dumps(
    {
        "fulfillment_details": {
            "address": {
                "name": "B",
                "line_one": "1 Main",
                "city": "SF",
                "state": "CA",
                "country": "US",
                "postal_code": "94105",
            }
        }
    }
).encode()
COMPLETE = json.dumps(
    {
        "payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": "tok_visa"}},
        }
    }
).encode()

Latencies = dict[str, list[float]]


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads the whole answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path.encode(), len(body), headers, body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        start = lower.index(b"\r\ncontent-length:") + 17
        length = int(lower[start : lower.index(b"\r\n", start)])
        data = await self.reader.readexactly(length)
        if b"\r\nconnection: close" in lower:
            self.close()
        return int(head[9:12]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _timed(
    latencies: Latencies, name: str, call: Awaitable[tuple[int, bytes]]
) -> tuple[int, bytes]:
    start = time.perf_counter()
    answer = await call
    latencies.setdefault(name, []).append(time.perf_counter() - start)
    return answer


async def bare(conn: Connection, latencies: Latencies) -> bool:
    """One request to the bare Flask endpoint."""
    status, _ = await _timed(latencies, "bare", conn.post("/bare", b"{}", API_HEADERS))
    if status != 200:
        raise RuntimeError(f"bare answered {status}")
    return False


def _session_id(body: bytes) -> str:
    """The session id of a create answer, found without decoding the whole JSON body.

    The client shares the CPUs with the servers, so it does as little per request as it can;
    the tests check what the answers hold, the benchmark only that each step succeeded.
    """
    start = body.index(b'"id":"cs_') + 6
    return body[start : body.index(b'"', start)].decode()


async def flow(conn: Connection, latencies: Latencies) -> bool:
    """One checkout: create -> update (address) -> complete (tok_visa); True once paid."""

    def headers() -> bytes:
        return API_HEADERS + b"Idempotency-Key: %s\r\n" % str(uuid.uuid4()).encode()

    status, body = await _timed(
        latencies, "create", conn.post("/checkout_sessions", CREATE, headers())
    )
    if status != 201:
        raise RuntimeError(f"create answered {status}: {body[:200]!r}")
    path = f"/checkout_sessions/{_session_id(body)}"
    status, body = await _timed(latencies, "update", conn.post(path, UPDATE, headers()))
    if status != 200:
        raise RuntimeError(f"update answered {status}: {body[:200]!r}")
    status, body = await _timed(
        latencies, "complete", conn.post(f"{path}/complete", COMPLETE, headers())
    )
    if status != 200 or b'"status":"completed"' not in body:
        raise RuntimeError(f"complete answered {status}: {body[:200]!r}")
    return True


SCENARIOS: dict[str, Callable[[Connection, Latencies], Awaitable[bool]]] = {
    "bare": bare,
    "flow": flow,
}


def _client_process(
    url: str,
    scenario: str,
    clients: int,
    start_at: float,
    seconds: float,
    results: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    """Run `clients` connections in one process until the deadline; put what they measured."""
    host, port = url.removeprefix("http://").split(":")

    async def client(latencies: Latencies, failures: list[str], paid: list[int]) -> None:
        conn = Connection(host, int(port))
        step = SCENARIOS[scenario]
        try:
            while time.time() < start_at + seconds:
                try:
                    if await step(conn, latencies):
                        paid[0] += 1
                except (RuntimeError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
        finally:
            conn.close()

    async def run() -> tuple[Latencies, list[str], int]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        latencies: Latencies = {}
        failures: list[str] = []
        paid = [0]
        await asyncio.gather(*(client(latencies, failures, paid) for _ in range(clients)))
        return latencies, failures, paid[0]

    cpu = time.process_time()
    latencies, failures, paid = asyncio.run(run())
    results.put((latencies, failures, paid, time.process_time() - cpu))


def _server_cpu(proc_pid: int) -> float:
    """Return the CPU seconds used so far by gunicorn's workers (Linux /proc; 0 elsewhere)."""
    try:
        children = Path(f"/proc/{proc_pid}/task/{proc_pid}/children").read_text().split()
        ticks = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


class Receiver:
    """bench/receiver.py in its own process, and what it has counted."""

    def __init__(self, secret: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/orders"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/receiver.py"), "--port", str(self.port)],
            env={**os.environ, "ORDER_WEBHOOK_SECRET": secret},
        )
        self._http = requests.Session()
        deadline = time.time() + 10
        while True:
            try:
                self.stats()
                return
            except requests.ConnectionError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("bench/receiver.py did not start") from None
                time.sleep(0.05)

    def stats(self) -> dict[str, float]:
        """What arrived so far (bench/receiver.py's GET /stats)."""
        return self._http.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()

    def wait_for(self, orders: int, timeout: float) -> dict[str, float]:
        """Poll until `orders` distinct orders have arrived (or the timeout); return the stats."""
        deadline = time.time() + timeout
        while (got := self.stats())["orders"] < orders and time.time() < deadline:
            time.sleep(0.02)
        return got

    def stop(self) -> None:
        self._http.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def receiver_process(secret: str) -> Iterator[Receiver]:
    """Run bench/receiver.py for the length of the benchmark."""
    receiver = Receiver(secret)
    try:
        yield receiver
    finally:
        receiver.stop()


def measure(
    url: str,
    server_pid: int,
    scenario: str,
    clients: int,
    seconds: float,
    procs: int,
    receiver: Receiver | None = None,
    drain_seconds: float = 30.0,
) -> dict[str, object]:
    """Drive one server for `seconds` with `clients` connections split over `procs` processes.

    With a `receiver`, wait after the load until every order completed in this measurement
    has arrived (at most `drain_seconds`), and count the server's CPU until then.
    """
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [
        context.Process(target=_client_process, args=(url, scenario, n, start_at, seconds, results))
        for n in shares
        if n
    ]
    before = receiver.stats() if receiver is not None else None
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    server_before = _server_cpu(server_pid)
    latencies: Latencies = {}
    failures: list[str] = []
    client_cpu = 0.0
    paid = 0
    for _ in workers:
        got, failed, n_paid, cpu = results.get()
        for name, values in got.items():
            latencies.setdefault(name, []).extend(values)
        failures.extend(failed)
        paid += n_paid
        client_cpu += cpu
    stopped_at = time.time()
    server_cpu = _server_cpu(server_pid) - server_before
    for worker in workers:
        worker.join()
    total = sum(len(v) for v in latencies.values())
    result: dict[str, object] = {
        "latencies": latencies,
        "failures": failures,
        "requests": total,
        "paid": paid,
        "rps": total / seconds,
        "client_ms": 1000 * client_cpu / max(total, 1),
        "server_ms": 1000 * server_cpu / max(total, 1),
        "server_ms_per_order": 1000 * server_cpu / max(paid, 1),
    }
    if receiver is not None and before is not None:
        at_stop = receiver.stats()
        done = receiver.wait_for(int(before["orders"]) + paid, drain_seconds)
        server_cpu = _server_cpu(server_pid) - server_before
        result.update(
            arrived_during=int(at_stop["orders"] - before["orders"]),
            arrived=int(done["orders"] - before["orders"]),
            duplicates=int(done["duplicates"] - before["duplicates"]),
            bad_signatures=int(done["bad_signatures"] - before["bad_signatures"]),
            lag=max(0.0, done["last_at"] - stopped_at),
            server_ms_per_order=1000 * server_cpu / max(paid, 1),
            receiver_ms_per_order=1000 * (done["cpu"] - before["cpu"]) / max(paid, 1),
        )
    return result


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, max(0, int(len(values) * fraction + 0.5) - 1))]


def report(label: str, result: dict[str, object]) -> None:
    """Print req/s, CPU per request, and p50/p95/p99 per endpoint (and deliveries)."""
    print(
        f"  {label:<20} {result['rps']:7.0f} req/s  ({result['requests']} requests; CPU per "
        f"request: server {result['server_ms']:.2f} ms, client {result['client_ms']:.2f} ms)"
    )
    latencies: Latencies = result["latencies"]  # type: ignore[assignment]
    for name, values in latencies.items():
        values = sorted(values)
        print(
            f"    {name:<9} n={len(values):6d}  p50={statistics.median(values) * 1000:6.1f} ms"
            f"  p95={_percentile(values, 0.95) * 1000:6.1f} ms"
            f"  p99={_percentile(values, 0.99) * 1000:6.1f} ms"
        )
    if result["paid"]:
        print(f"    server CPU per completed order: {result['server_ms_per_order']:.2f} ms")
    if "arrived" in result:
        print(
            f"    orders: {result['paid']} completed, {result['arrived_during']} had arrived "
            f"when the load stopped, {result['arrived']} in all; last one "
            f"{result['lag']:.2f} s after the load stopped; duplicates {result['duplicates']}, "
            f"bad signatures {result['bad_signatures']}; receiver CPU per order "
            f"{result['receiver_ms_per_order']:.2f} ms"
        )
    failures: list[str] = result["failures"]  # type: ignore[assignment]
    if failures:
        print(f"    FAILED {len(failures)} times; first: {failures[0]}")


def _store_env(tmp: str, name: str, webhook_url: str | None, secret: str) -> dict[str, str]:
    """Files and environment of one store: the test catalog (widget unlimited), its own DB."""
    products = json.loads((ROOT / "tests/data/products.json").read_text())
    products[0]["inventory"] = 100_000_000
    (Path(tmp) / "products.json").write_text(json.dumps(products))
    config = json.loads((ROOT / "tests/data/config.json").read_text())
    if webhook_url:
        config["orderWebhookUrl"] = webhook_url
    (Path(tmp) / f"config-{name}.json").write_text(json.dumps(config))
    return {
        "SHOP_CONFIG": str(Path(tmp) / f"config-{name}.json"),
        "SHOP_PRODUCTS": str(Path(tmp) / "products.json"),
        "SHOP_DATABASE_URL": f"sqlite:///{tmp}/{name}.sqlite3",
        "SHOP_API_KEYS": "",
        "ORDER_WEBHOOK_SECRET": secret if webhook_url else "",
        "ACP_WEBHOOK_URL": "",
        "ACP_WEBHOOK_SECRET": "",
    }


LOGSINK, RECEIVER = "flow, no receiver", "flow, receiver"


def summarize(rounds: list[dict[str, dict[str, object]]]) -> None:
    """Print each store's numbers over the rounds: medians and ranges, side by side."""
    print("summary (median, range over rounds; ratios to the bare app of the same round):")
    baseline: list[float] = []
    for label in (LOGSINK, RECEIVER):
        got = [r for r in rounds if label in r]
        if not got:
            continue
        ratios = [r[label]["rps"] / r["bare"]["rps"] for r in got]  # type: ignore[operator]
        p95 = [_percentile(sorted(r[label]["latencies"]["complete"]), 0.95) * 1000 for r in got]  # type: ignore[index]
        cpu = [float(r[label]["server_ms_per_order"]) for r in got]  # type: ignore[arg-type]

        def spread(values: list[float], fmt: str) -> str:
            return (
                f"{format(statistics.median(values), fmt)} "
                f"({format(min(values), fmt)}-{format(max(values), fmt)})"
            )

        line = (
            f"  {label:<20} flow/bare {spread([100 * x for x in ratios], '.0f')} %, "
            f"complete p95 {spread(p95, '.1f')} ms, server CPU per order {spread(cpu, '.2f')} ms"
        )
        if label == LOGSINK:
            baseline = cpu
        elif baseline:
            extra = [c - b for c, b in zip(cpu, baseline, strict=False)]
            line += f" (+{spread(extra, '.2f')} ms over no receiver)"
        print(line)
        if label == RECEIVER:
            lag = [float(r[label]["lag"]) for r in got]  # type: ignore[arg-type]
            during = [
                100 * int(r[label]["arrived_during"]) / max(int(r[label]["paid"]), 1)  # type: ignore[call-overload]
                for r in got
            ]
            lost = sum(int(r[label]["paid"]) - int(r[label]["arrived"]) for r in got)  # type: ignore[call-overload]
            dupes = sum(int(r[label]["duplicates"]) for r in got)  # type: ignore[call-overload]
            print(
                f"  {'':<20} arrived while the load ran {spread(during, '.0f')} %, last order "
                f"{spread(lag, '.2f')} s after the load stopped; not arrived {lost}, "
                f"duplicates {dupes}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="processes the load generator spreads its clients over",
    )
    parser.add_argument(
        "--no-receiver",
        action="store_true",
        help="measure only the store without orderWebhookUrl (orders logged, not sent)",
    )
    args = parser.parse_args()
    secret = "whsec_bench_" + uuid.uuid4().hex

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        settings = {"workers": args.workers, "threads": args.threads}
        print(
            f"gunicorn --workers {args.workers} --threads {args.threads} "
            f"({'sync' if args.threads == 1 else 'gthread'}) for every app; "
            f"{args.clients} clients in {args.client_procs} process(es); {args.seconds:g} s "
            f"per measurement, {args.rounds} round(s); {os.cpu_count()} CPUs"
        )
        bare_url, bare_p = stack.enter_context(
            gunicorn_process({}, app="bench.bare_app:app", **settings)
        )
        stores: list[tuple[str, str, int, Receiver | None]] = []
        url, proc = stack.enter_context(
            gunicorn_process(_store_env(tmp, "logsink", None, secret), **settings)
        )
        stores.append((LOGSINK, url, proc.pid, None))
        if not args.no_receiver:
            receiver = stack.enter_context(receiver_process(secret))
            url, proc = stack.enter_context(
                gunicorn_process(_store_env(tmp, "receiver", receiver.url, secret), **settings)
            )
            stores.append((RECEIVER, url, proc.pid, receiver))
            print(f"orders to {receiver.url} (bench/receiver.py, pid {receiver.proc.pid}), signed")

        common = (args.clients, args.warmup, args.client_procs)
        measure(bare_url, bare_p.pid, "bare", *common)
        for _label, url, pid, receiver in stores:
            measure(url, pid, "flow", *common, receiver=receiver)
        rounds: list[dict[str, dict[str, object]]] = []
        common = (args.clients, args.seconds, args.client_procs)
        for round_no in range(1, args.rounds + 1):
            load = os.getloadavg()
            print(
                f"round {round_no}: load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            )
            results = {"bare": measure(bare_url, bare_p.pid, "bare", *common)}
            report("bare flask", results["bare"])
            for label, url, pid, receiver in stores:
                results[label] = measure(url, pid, "flow", *common, receiver=receiver)
                report(label, results[label])
                ratio = results[label]["rps"] / results["bare"]["rps"]  # type: ignore[operator]
                p95 = _percentile(sorted(results[label]["latencies"]["complete"]), 0.95)  # type: ignore[index]
                print(
                    f"    flow / bare = {ratio:.0%} (target >= 35%); complete p95 = "
                    f"{p95 * 1000:.1f} ms (target < 50 ms)"
                )
            rounds.append(results)
        summarize(rounds)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
