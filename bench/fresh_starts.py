"""Start gunicorn on a brand-new SQLite database, again and again: does a first start ever fail?

Run:  .venv/bin/python bench/fresh_starts.py [--starts 200] [--workers 4]

Each start gets an empty directory, so every worker opens a file that does not exist yet and
they race to create it, switch it to WAL and create the tables, as a new install does. A start
counts as failed when gunicorn exits (a worker failed to boot: gunicorn halts) or its log says
"database is locked". Prints the count of failures and the time per start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_once(workers: int) -> str | None:
    """Start, wait for every worker, stop; return what went wrong, or None."""
    folder = Path(tempfile.mkdtemp(prefix="fresh-start-"))
    log = folder / "gunicorn.log"
    port = _port()
    env = {
        **os.environ,
        "SHOP_CONFIG": str(ROOT / "tests/data/config.json"),
        "SHOP_PRODUCTS": str(ROOT / "tests/data/products.json"),
        "SHOP_DATABASE_URL": f"sqlite:///{folder}/shop.sqlite3",
        "SHOP_API_KEYS": "",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--log-level", "info"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"gunicorn exited {proc.returncode}"
            booted = log.read_text(errors="replace").count("Booting worker")
            if booted >= workers:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        else:
            return "no answer within 60 s"
        time.sleep(0.3)  # let every worker finish create_app
        text = log.read_text(errors="replace")
        if "database is locked" in text or "Worker failed to boot" in text:
            return "database is locked"
        return None
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    failures: list[str] = []
    began = time.monotonic()
    for number in range(1, args.starts + 1):
        problem = _start_once(args.workers)
        if problem:
            failures.append(problem)
            print(f"start {number}: {problem}", flush=True)
    took = time.monotonic() - began
    print(
        f"{args.starts} fresh starts with {args.workers} workers: {len(failures)} failed; "
        f"{took / args.starts:.2f} s a start"
    )


if __name__ == "__main__":
    main()
