"""Start the real app under real gunicorn workers on a free loopback port (concurrency tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(log: Path, limit: int = 20_000) -> str:
    text = log.read_text(errors="replace")
    return text if len(text) <= limit else "…" + text[-limit:]


@contextmanager
def gunicorn_process(
    env: Mapping[str, str],
    workers: int = 3,
    threads: int = 1,
    app: str = "app:app",
    log_path: Path | None = None,
    ready: bool = True,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run gunicorn with the given environment; yield (base URL, process); stop it after.

    It is ready once /healthz answers; with `ready=False` nothing is sent to it at all (for
    a test that the store works with no request) and it is yielded as soon as it started.

    Its output goes to a temporary log file, not a pipe: nobody reads a pipe while the
    workers run, and a few hundred log lines (one per order in LogSink mode) would fill it
    and block every worker on its next write. The log is shown when gunicorn exits early.
    """
    port = free_port()
    with (
        open(log_path, "wb")  # kept for the caller to read
        if log_path is not None
        else tempfile.NamedTemporaryFile("wb", prefix="gunicorn-", suffix=".log", delete=False)
    ) as log_file:
        log = Path(log_file.name)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                app,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--log-level",
                "warning",
                "--graceful-timeout",
                "2",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while ready:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{_tail(log)}")
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a worker still booting
                pass
            if time.time() > deadline:
                raise RuntimeError(f"gunicorn did not answer /healthz within 30 s:\n{_tail(log)}")
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path is None:
            log.unlink(missing_ok=True)


@contextmanager
def gunicorn(
    env: Mapping[str, str],
    workers: int = 3,
    threads: int = 1,
    app: str = "app:app",
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run `gunicorn app:app` with the given environment; yield its base URL; stop it after."""
    with gunicorn_process(env, workers, threads, app, log_path=log_path) as (url, _proc):
        yield url


def store_env(shop_files: Mapping[str, Path], receiver: Any, **overrides: str) -> dict[str, str]:
    """The environment of a store on the test files that hands its orders to `receiver`.

    Writes `orderWebhookUrl` into the test config.json; orders are signed with the receiver's
    secret; the agent-platform hand-off and ACP signing are off unless `overrides` say so.
    """
    config = json.loads(shop_files["config"].read_text())
    config["orderWebhookUrl"] = receiver.url
    shop_files["config"].write_text(json.dumps(config))
    return {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "",
        "ORDER_WEBHOOK_SECRET": receiver.secret,
        "ORDER_WEBHOOK_TIMEOUT": "",
        "ACP_WEBHOOK_URL": "",
        "ACP_WEBHOOK_SECRET": "",
        **overrides,
    }
