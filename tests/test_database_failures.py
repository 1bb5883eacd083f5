"""A failing database is loud: removed, replaced, damaged or on a full disk, under real gunicorn.

Each test runs the store (2 sync workers) with a real order receiver, buys a few orders, then
breaks the database the way an operator's bad day does, and checks what the store says:
no `completed` answer without the order stored (in the database or, in full, in the log),
503 `database_unavailable` with a sentence on new checkouts, /healthz degraded with the
reason, and the sentence in the log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import API_VERSION, cart, payment
from tests.gunicorn_server import gunicorn, gunicorn_process
from tests.gunicorn_server import store_env as receiver_store_env

WORKERS = 2


def _headers() -> dict[str, str]:
    return {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": str(uuid.uuid4()),
    }


def _buy(url: str) -> tuple[requests.Response, requests.Response | None]:
    """Create a session and complete it; the complete answer is None when create failed."""
    created = requests.post(f"{url}/checkout_sessions", json=cart(), headers=_headers(), timeout=15)
    if created.status_code != 201:
        return created, None
    session_id = created.json()["id"]
    done = requests.post(
        f"{url}/checkout_sessions/{session_id}/complete",
        json=payment(),
        headers=_headers(),
        timeout=15,
    )
    return created, done


@pytest.fixture
def store_env(shop_files, order_receiver) -> dict[str, str]:
    return receiver_store_env(
        shop_files,
        order_receiver,
        ORDER_SWEEP_SECONDS="0.2",
    )


def _assert_refused(url: str, attempts: int, reason: str) -> None:
    """Every new checkout is a 503 with the reason's sentence; none completes."""
    for _ in range(attempts):
        created, done = _buy(url)
        assert created.status_code == 503, created.text
        body = created.json()
        assert body["type"] == "service_unavailable"
        assert body["code"] == "database_unavailable"
        assert reason in body["message"]
        assert created.headers["Retry-After"]
        assert done is None


def _assert_degraded(url: str, reason: str) -> list[str]:
    health = requests.get(f"{url}/healthz?strict=1", timeout=15)  # 503 when degraded
    assert health.status_code == 503, health.text
    body = health.json()
    assert body["status"] == "degraded"
    said = [r["reason"] for r in body["reasons"] if r["check"] == "database"]
    assert any(reason in s for s in said), body
    return said


def _every_completed_is_kept(answers: list[requests.Response], delivered: set[str], log: str):
    """A `completed` answer's order reached the receiver or is in the log whole."""
    for answer in answers:
        if answer.status_code == 200 and answer.json()["status"] == "completed":
            order_id = answer.json()["order"]["id"]
            in_log = re.search(rf"PAID ORDER NOT STORED.*payload=(\{{.*\"{order_id}\".*\}})", log)
            assert order_id in delivered or in_log, f"{order_id} completed but is kept nowhere"


def _delivered_ids(receiver) -> set[str]:  # type: ignore[no-untyped-def]
    return {order["order"]["id"] for order in receiver.orders}


def test_a_removed_file_refuses_checkouts_and_its_orders_are_rescued(
    store_env, shop_files, order_receiver
):
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn(store_env, workers=WORKERS, log_path=log) as url:
        before = [_buy(url)[1] for _ in range(4)]
        assert all(a is not None and a.json()["status"] == "completed" for a in before)
        order_receiver.wait_for(4, timeout=10)
        os.unlink(shop_files["db"])  # what `rm instance/shop.sqlite3` does to a running store
        _assert_refused(url, 6, "was removed while the store was running")
        problems = _assert_degraded(url, "was removed")
        for _ in range(50):  # the worker that answers may not be the one that made the copy
            if any(".rescued-" in p for p in problems):
                break
            time.sleep(0.1)
            problems = _assert_degraded(url, "was removed")
        assert requests.get(f"{url}/feeds/products.json", timeout=10).status_code == 503
    text = log.read_text()
    assert "DATABASE UNAVAILABLE: The database file" in text
    assert len(_delivered_ids(order_receiver)) == 4
    # What the store still saw through its open connections was copied beside the path.
    rescued = [p for p in shop_files["dir"].glob("shop.sqlite3.rescued-*") if "part" not in p.name]
    assert rescued and any(str(rescued[0]) in p for p in problems)
    with sqlite3.connect(rescued[0]) as conn:
        paid = conn.execute("SELECT count(*) FROM checkout_sessions WHERE status='completed'")
        assert paid.fetchone()[0] == 4
    conn.close()
    assert not shop_files["db"].exists()  # no empty database was made in its place


def test_a_worker_started_after_the_file_was_removed_makes_no_new_empty_one(
    store_env, shop_files, order_receiver
):
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn_process(store_env, workers=WORKERS, log_path=log) as (url, proc):
        assert _buy(url)[1].json()["status"] == "completed"
        order_receiver.wait_for(1, timeout=10)
        os.unlink(shop_files["db"])
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)  # gunicorn starts a worker in its place
        deadline = time.monotonic() + 20
        while "cannot start this worker" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not shop_files["db"].exists(), "a new worker made a new, empty database file"
        _assert_refused(url, 2, "was removed while the store was running")
    text = log.read_text()
    assert "shop cannot start this worker (the others keep serving)" in text
    assert "was removed while the store was running; restore it" in text
    assert not shop_files["db"].exists()


def test_a_replaced_file_refuses_checkouts(store_env, shop_files, order_receiver):
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn(store_env, workers=WORKERS, log_path=log) as url:
        assert _buy(url)[1].json()["status"] == "completed"
        # Another database file put in its place (say, an old copy) while the store runs.
        other = shop_files["dir"] / "other.sqlite3"
        sqlite3.connect(other).close()
        os.replace(other, shop_files["db"])
        _assert_refused(url, 4, "was replaced by another file")
        _assert_degraded(url, "was replaced")
    assert "DATABASE UNAVAILABLE" in log.read_text()
    assert list(shop_files["dir"].glob("shop.sqlite3.rescued-*"))


def test_a_damaged_file_answers_503_never_500(store_env, shop_files, order_receiver):
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn(store_env, workers=WORKERS, log_path=log) as url:
        for _ in range(3):
            assert _buy(url)[1].json()["status"] == "completed"
        order_receiver.wait_for(3, timeout=10)
        with sqlite3.connect(shop_files["db"]) as conn:  # every page back in the main file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = shop_files["db"].stat().st_size
        with open(shop_files["db"], "r+b") as damaged:  # the same file, its bytes garbage
            damaged.write(os.urandom(size))
        answers = []
        for _ in range(6):
            created, done = _buy(url)
            answers += [created] + ([done] if done is not None else [])
            assert created.status_code in (201, 503), created.text
            if created.status_code == 503:
                assert created.json()["code"] == "database_unavailable"
                assert "is damaged" in created.json()["message"]
            assert done is None or done.status_code in (200, 503), done.text
        assert any(a.status_code == 503 for a in answers)
        _assert_degraded(url, "is damaged")
    text = log.read_text()
    assert "DATABASE UNAVAILABLE: The database" in text
    assert "Traceback" not in text
    _every_completed_is_kept(answers, _delivered_ids(order_receiver), text)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 6 MiB filesystem (tmpfs) to fill: the disk a full-disk test needs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root (CI runs as root): {done.stderr!r}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_checkouts_before_charging(
    store_env, shop_files, order_receiver, small_disk
):
    db = small_disk / "shop.sqlite3"
    env = {**store_env, "SHOP_DATABASE_URL": f"sqlite:///{db}"}
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn(env, workers=WORKERS, log_path=log) as url:
        for _ in range(3):
            assert _buy(url)[1].json()["status"] == "completed"
        order_receiver.wait_for(3, timeout=10)
        with sqlite3.connect(db) as conn:  # an empty WAL: the next commit needs new space
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        filler = _fill(small_disk)
        answers = []
        for _ in range(5):
            created, done = _buy(url)
            answers += [created] + ([done] if done is not None else [])
            assert created.status_code == 503, created.text
            assert created.json()["code"] == "database_unavailable"
        _assert_degraded(url, "free")
        filler.unlink()  # space is back: checkouts resume by themselves
        assert _buy(url)[1].json()["status"] == "completed"
        order_receiver.wait_for(4, timeout=10)
    text = log.read_text()
    assert "DATABASE UNAVAILABLE: The disk holding" in text
    _every_completed_is_kept(answers, _delivered_ids(order_receiver), text)
    assert len(_delivered_ids(order_receiver)) == 4


class _BreaksDuringCharge:
    """The store's own provider, with the database broken while the charge is in flight."""

    def __init__(self, provider, breaks) -> None:  # type: ignore[no-untyped-def]
        self._provider, self._breaks = provider, breaks
        self.charges = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._provider, name)

    def charge(self, request):  # type: ignore[no-untyped-def]
        result = self._provider.charge(request)
        self.charges += 1
        self._breaks()
        return result


def _paid_but_not_stored(make_app, acp_client, db: Path, breaks, caplog) -> None:  # type: ignore[no-untyped-def]
    app = make_app(env={"SHOP_DATABASE_URL": f"sqlite:///{db}"})
    state = app.extensions["shop"]
    state.provider = _BreaksDuringCharge(state.provider, breaks)
    acp = acp_client(app.test_client())
    session_id = acp.create(cart()).get_json()["id"]
    answer = acp.complete(session_id)
    # The payment was taken: the answer says so, whatever the database did.
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "completed"
    order_id = body["order"]["id"]
    assert state.provider.charges == 1
    lines = [r.getMessage() for r in caplog.records if "PAID ORDER NOT STORED" in r.getMessage()]
    assert len(lines) == 1, lines
    payload = json.loads(lines[0].split("payload=", 1)[1])
    assert payload["order"]["id"] == order_id
    assert payload["line_items"] and payload["totals"]  # the whole order, fulfillable
    health = app.test_client().get("/healthz?strict=1")
    assert health.status_code == 503
    assert "database" in {r["check"] for r in health.get_json()["reasons"]}
    # The next buyer is refused before anything is charged.
    again = acp.create(cart())
    assert again.status_code == 503
    assert again.get_json()["code"] == "database_unavailable"
    assert state.provider.charges == 1


def test_a_payment_taken_as_the_file_is_removed_is_answered_and_logged_whole(
    make_app, shop_files, caplog
):
    from tests.conftest import AcpClient

    db = shop_files["db"]
    _paid_but_not_stored(make_app, AcpClient, db, lambda: os.unlink(db), caplog)


def test_a_payment_taken_as_the_disk_fills_is_answered_and_logged_whole(
    make_app, small_disk, caplog
):
    from tests.conftest import AcpClient

    db = small_disk / "shop.sqlite3"

    def fill_the_disk() -> None:
        with sqlite3.connect(db) as conn:  # an empty WAL: the payment's commit needs new space
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _fill(small_disk)

    _paid_but_not_stored(make_app, AcpClient, db, fill_the_disk, caplog)
    assert any("database or disk is full" in r.getMessage() for r in caplog.records)
