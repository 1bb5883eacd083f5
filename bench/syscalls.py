"""Count the system calls of one gunicorn sync worker per request of the checkout flow.

Run:  .venv/bin/python bench/syscalls.py [--flows 150]

Starts the store (LogSink, the bench catalog) under gunicorn with one sync worker, warms it
with 30 flows, then attaches `strace -c -f` to the worker for `--flows` create -> update ->
complete flows sent one request at a time, and prints each system call made at least once
every four requests, per request. Not a timing benchmark (strace slows every call): it shows
what the request path asks of the kernel. Needs strace and permission to trace (root).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.flow import COMPLETE, CREATE, HEADERS, UPDATE, _store_env  # noqa: E402
from tests.gunicorn_server import gunicorn_process  # noqa: E402


def _post(host: str, port: int, path: str, body: bytes) -> dict[str, object]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", path, body, {**HEADERS, "Idempotency-Key": str(uuid.uuid4())})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _flow(host: str, port: int) -> None:
    session_id = _post(host, port, "/checkout_sessions", CREATE)["id"]
    _post(host, port, f"/checkout_sessions/{session_id}", UPDATE)
    done = _post(host, port, f"/checkout_sessions/{session_id}/complete", COMPLETE)
    if done.get("status") != "completed":
        raise SystemExit(f"complete did not complete: {done}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = _store_env(tmp, "logsink", None, "unused")
        with gunicorn_process(env, workers=1) as (url, proc):
            host, port = url.split("//", 1)[1].rsplit(":", 1)
            for _ in range(30):
                _flow(host, int(port))
            worker = subprocess.check_output(["pgrep", "-P", str(proc.pid)], text=True).split()[0]
            out = Path(tmp) / "strace.txt"
            tracer = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(out), "-p", worker], stderr=subprocess.DEVNULL
            )
            time.sleep(0.5)  # attached
            for _ in range(args.flows):
                _flow(host, int(port))
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
        counted = out.read_text()
    requests = 3 * args.flows
    total = 0
    for line in counted.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            total += calls
            if calls * 4 >= requests:
                print(f"{parts[-1]:14s} {calls / requests:6.2f} per request")
    print(f"{'all':14s} {total / requests:6.2f} per request")


if __name__ == "__main__":
    main()
