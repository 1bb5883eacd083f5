"""SQLite storage: pragmas, the writer queue across processes, lock-free reads, no lost update."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from sqlalchemy import text

from shop import checkout
from shop.state import get_state
from shop.storage.connections import read
from shop.storage.models import db
from tests.conftest import cart


def test_pragmas_trade_the_last_commits_for_speed_never_the_file(app):
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        db.session.rollback()


def test_writers_in_other_processes_queue_on_the_lock_file(app, shop_files):
    """A worker process holding the queue makes this process's transaction wait its turn."""
    lock = f"{shop_files['db']}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({lock!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(0.5)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with app.app_context():
            db.session.execute(text("UPDATE stock_levels SET qty = qty WHERE item_id = 'x'"))
            db.session.commit()
        assert time.monotonic() - started >= 0.3
    finally:
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_reads_do_not_wait_for_a_writer(app):
    """shop.connections.read runs beside an open write transaction (WAL), seeing the last commit."""
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:
        with app.app_context():
            db.session.execute(text("UPDATE stock_levels SET qty = 0 WHERE item_id = 'scarce'"))
            holding.set()
            done.wait(10)
            db.session.rollback()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with app.app_context():
            rows = read(text("SELECT qty FROM stock_levels WHERE item_id = 'scarce'"))
        assert time.monotonic() - started < 1
        assert rows[0].qty == 5  # the uncommitted 0 is not visible
    finally:
        done.set()
        thread.join(10)


def test_an_update_racing_another_is_applied_on_top_not_lost(acp, app, monkeypatch):
    """Two updates of one session: the one that read first rereads and keeps both changes."""
    created = acp.create(cart(("widget", 1))).get_json()
    real_assess = checkout.sessions._assess
    raced: list[str] = []

    def assess_while_another_update_commits(state, details):  # type: ignore[no-untyped-def]
        if not raced:
            raced.append("coupon")
            with app.app_context():  # another request's own session and transaction
                checkout.update_session(
                    get_state(), created["id"], checkout.SessionInput(coupon_codes=("TEN",))
                )
        return real_assess(state, details)

    monkeypatch.setattr(checkout.sessions, "_assess", assess_while_another_update_commits)
    response = acp.post(
        f"/checkout_sessions/{created['id']}", {"line_items": [{"id": "widget", "quantity": 3}]}
    )
    assert response.status_code == 200
    body = acp.get(f"/checkout_sessions/{created['id']}").get_json()
    assert body["line_items"][0]["quantity"] == 3
    assert body["discounts"]["codes"] == ["TEN"]
