"""The request path's trims (issue 12) keep what they trimmed: coroutine views, the space check."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import flask.app
import pytest


def test_ensure_sync_decides_once_per_function_and_still_runs_coroutine_views(
    make_app, monkeypatch
):
    app = make_app()
    asked: list[Any] = []
    real = flask.app.iscoroutinefunction

    def counting(func: Any) -> bool:
        asked.append(func)
        return real(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    ran: list[str] = []

    async def hello() -> str:
        await asyncio.sleep(0)
        ran.append("coroutine")
        return "from a coroutine"

    def plain() -> str:
        return "from a function"

    def run_in_loop(func: Any) -> Any:  # what Flask's `async` extra does, without asgiref
        return lambda *args, **kwargs: asyncio.run(func(*args, **kwargs))

    app.async_to_sync = run_in_loop  # type: ignore[method-assign]
    app.add_url_rule("/probe/async", view_func=hello)
    app.add_url_rule("/probe/plain", view_func=plain)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/probe/async").get_data(as_text=True) == "from a coroutine"
        assert client.get("/probe/plain").get_data(as_text=True) == "from a function"
    assert ran == ["coroutine"] * 3
    assert app.ensure_sync(plain) is plain
    # Every hook and view was asked about once, not on each of the six requests.
    assert asked.count(hello) == 1 and asked.count(plain) == 1
    assert len(asked) == len({id(func) for func in asked}), asked


def test_the_space_check_looks_at_most_once_a_second_and_resumes_at_once(make_app, monkeypatch):
    from shop.errors import DatabaseUnavailableError
    from shop.storage import health

    app = make_app()
    with app.app_context():
        health.require_writable()  # room: believed for a second
        # The disk "fills": more than the real disk has free is required from now on.
        monkeypatch.setattr(health, "MIN_FREE_BYTES", 1 << 62)
        health.require_writable()  # within the second: not looked at again
        time.sleep(health.SPACE_EVERY_SECONDS + 0.05)
        with pytest.raises(DatabaseUnavailableError, match="free"):
            health.require_writable()
        with pytest.raises(DatabaseUnavailableError, match="free"):
            health.require_writable()  # no room: looked at on every ask
        assert any("free" in said for said in health.problems(probe=False))
        monkeypatch.setattr(health, "MIN_FREE_BYTES", 2 * 1024 * 1024)
        health.require_writable()  # room again: the very next ask goes through


def test_made_request_ids_are_unique_in_each_forked_worker(make_app):
    import os
    import re

    client = make_app().test_client()
    made = [client.get("/healthz").headers["Request-Id"] for _ in range(50)]
    assert all(re.fullmatch(r"req_[0-9a-f]{16}", found) for found in made), made
    assert len(set(made)) == len(made)
    assert client.get("/healthz", headers={"Request-Id": "req_mine"}).headers["Request-Id"] == (
        "req_mine"
    )
    # Gunicorn forks its workers from one process: each must make its own ids, not the same
    # sequence. The ids come from `random`, which Python reseeds in a forked child; checked
    # here without serving a request in the child (threads may hold locks across a fork).
    import random

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, random.getrandbits(64).to_bytes(8, "big"))
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = int.from_bytes(os.read(read, 8), "big")
    os.close(read)
    assert child != random.getrandbits(64)


def test_epoch_follows_a_moved_clock(monkeypatch):
    from datetime import timedelta

    from shop import clock

    assert abs(clock.epoch() - time.time()) < 2
    later = clock.now() + timedelta(hours=5)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert clock.epoch() == int(later.timestamp())
