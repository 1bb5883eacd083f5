"""Measure /mcp two ways: the store's JSON-RPC dispatcher in Flask, and the MCP SDK's server.

    .venv/bin/python bench/mcp_transport.py [--calls 1000]

Starts, one process each, `gunicorn app:app` (one sync worker: the store as deployed) and
`uvicorn bench.mcp_sdk_app:app` (the SDK's stateless JSON Streamable HTTP server, calling the
same REST dispatch in a thread), on the sample catalog in demo mode with a fresh database.
Then, one request at a time on a new connection each (as nginx sends them), it reads one
checkout session `--calls` times as REST `GET /checkout_sessions/{id}` and as the MCP tool
`get_checkout_session` on each server, and reports the server's CPU per request (utime +
stime of its processes from /proc, so the client's own CPU is not counted), wall-clock
latency p50/p95, and each server's resident memory after the run. Timings are noisy on a
shared 2-core machine: run it twice.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gunicorn_server import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _rss_mb(pids: list[int]) -> float:
    kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                kb += int(line.split()[1])
    return kb / 1024


def _children(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        for child in map(int, text):
            found += _children(child)
    return found


def _request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {
        "Authorization": "Bearer demo",
        "API-Version": "2026-04-17",
        "Idempotency-Key": os.urandom(8).hex(),
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Connection": "close",
    }
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def _wait(port: int, method: str, path: str, body: dict | None = None) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            _request(port, method, path, body)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def _measure(name: str, port: int, pids: list[int], method: str, path: str, body, calls: int):
    for _ in range(50):  # warm up
        _request(port, method, path, body)
    before = _cpu_seconds(pids)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        status, data = _request(port, method, path, body)
        latencies.append(time.perf_counter() - start)
        assert status == 200 and b'"status"' in data, (status, data[:300])
    cpu = (_cpu_seconds(pids) - before) / calls
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(
        f"{name:<44} server CPU {cpu * 1000:5.2f} ms/request   "
        f"latency p50 {p50:5.2f} ms  p95 {p95:5.2f} ms   RSS {_rss_mb(pids):5.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    env = {
        **os.environ,
        "SHOP_DATABASE_URL": f"sqlite:///{tmp}/shop.sqlite3",
        "SHOP_API_KEYS": "",
        "PYTHONPATH": str(ROOT),
    }
    g_port, u_port = free_port(), free_port()
    venv = Path(sys.executable).parent
    log = open(tmp / "servers.log", "wb")  # noqa: SIM115
    gunicorn = subprocess.Popen(
        [
            venv / "gunicorn",
            "app:app",
            "--bind",
            f"127.0.0.1:{g_port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uvicorn = subprocess.Popen(
        [
            venv / "uvicorn",
            "bench.mcp_sdk_app:app",
            "--port",
            str(u_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(g_port, "GET", "/healthz")
        _wait(u_port, "POST", "/mcp", {"jsonrpc": "2.0", "id": 0, "method": "ping"})
        _status, data = _request(
            g_port,
            "POST",
            "/checkout_sessions",
            {"currency": "usd", "capabilities": {}, "line_items": [{"id": "enamel-mug-navy"}]},
        )
        session_id = json.loads(data)["id"]
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "get_checkout_session",
                "arguments": {"meta": {"api_version": "2026-04-17"}, "id": session_id},
            },
        }
        g_pids, u_pids = _children(gunicorn.pid), _children(uvicorn.pid)
        print(f"{args.calls} sequential requests each, a new connection per request")
        _measure(
            "REST GET, gunicorn sync (baseline)",
            g_port,
            g_pids,
            "GET",
            f"/checkout_sessions/{session_id}",
            None,
            args.calls,
        )
        _measure(
            "MCP tools/call, Flask dispatcher, gunicorn",
            g_port,
            g_pids,
            "POST",
            "/mcp",
            call,
            args.calls,
        )
        _measure(
            "MCP tools/call, SDK server, uvicorn", u_port, u_pids, "POST", "/mcp", call, args.calls
        )
    finally:
        for proc in (gunicorn, uvicorn):
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


if __name__ == "__main__":
    main()
