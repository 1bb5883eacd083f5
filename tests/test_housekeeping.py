"""Housekeeping off the request path: purge in the background, give the space back, bulk replay.

The gunicorn test fills a store with 10,000 expired sessions (about the reliability run's
67.6 MB file), starts it, and shows that the first request does not purge (every expired
session is still there when it has answered), that the background purge then removes them
all, and that the file shrinks.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

import requests

from shop import clock
from shop.orders import retry_schedule
from tests.conftest import API_VERSION, cart
from tests.gunicorn_server import gunicorn
from tests.test_order_delivery import _checkout, _rows, _sweep, later, shop  # noqa: F401

EXPIRED = 10_000
CART_BYTES = 6_000  # a large cart's JSON: 10,000 of them make a file of ~70 MB


def _fill_with_expired_sessions(db: Path, count: int) -> None:
    """Insert `count` sessions that expired two hours ago (past the purge's grace hour)."""
    now = clock.epoch()
    cart_text = json.dumps({"lines": [], "note": "x" * CART_BYTES})
    rows = [
        (f"cs_old_{n:06d}", "ready_for_payment", "usd", now - 9000, now - 9000, now - 7200)
        for n in range(count)
    ]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO checkout_sessions (id, status, currency, created_at, updated_at, "
            "expires_at, cart, notices, stock_reserved, flagged) "
            f"VALUES (?, ?, ?, ?, ?, ?, '{cart_text}', '[]', 0, 0)",
            rows,
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT count(*) FROM checkout_sessions").fetchone()[0]
    conn.close()
    return found


def _size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_the_purge_runs_in_the_background_and_the_file_shrinks(make_app, shop_files):
    db = shop_files["db"]
    make_app()  # the schema, as a first start makes it (auto_vacuum=INCREMENTAL)
    _fill_with_expired_sessions(db, EXPIRED)
    before = _size(db)
    assert before > 50 * 2**20
    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{db}",
        "SHOP_API_KEYS": "",
    }
    log = shop_files["dir"] / "gunicorn.log"
    with gunicorn(env, workers=2, log_path=log) as url:
        headers = {
            "Authorization": "Bearer demo",
            "API-Version": API_VERSION,
            "Idempotency-Key": str(uuid.uuid4()),
        }
        started = time.perf_counter()
        first = requests.post(f"{url}/checkout_sessions", json=cart(), headers=headers, timeout=30)
        took = time.perf_counter() - started
        assert first.status_code == 201
        # The request answered without purging: every expired session is still there.
        assert _count(db) == EXPIRED + 1
        deadline = time.monotonic() + 60
        while _count(db) > 1 or _size(db) > before / 10:
            assert time.monotonic() < deadline, (_count(db), _size(db))
            time.sleep(0.2)
        after = _size(db)
    print(
        f"first request {took * 1000:.0f} ms with {EXPIRED} expired sessions; "
        f"file {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB"
    )
    assert "Traceback" not in log.read_text()
    assert after < before / 10


def test_an_older_file_without_incremental_vacuum_is_converted_once(make_app, shop_files):
    from shop.checkout import retention

    db = shop_files["db"]
    with sqlite3.connect(db) as conn:  # a file made before auto_vacuum was set
        conn.execute("CREATE TABLE older (x INTEGER)")
    conn.close()
    app = make_app()
    _fill_with_expired_sessions(db, 2_000)
    before = _size(db)
    with app.app_context():
        result, space = retention.housekeep(app.extensions["shop"])
        assert result.sessions == 2_000 and space.vacuumed
        assert space.after < before / 5
        again, space_again = retention.housekeep(app.extensions["shop"])
        assert again.sessions == 0 and not space_again.vacuumed
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    conn.close()


def test_replay_failed_and_gave_up_in_bulk(shop, order_receiver, later):  # noqa: F811
    order_receiver.mode = "error"
    app = shop()
    given_up = [_checkout(app, cart())[0] for _ in range(2)]
    offset = 0
    for _ in range(3 * retry_schedule.MAX_ATTEMPTS):  # every retry of those two fails
        if {_rows(app, b["id"])[0]["state"] for b in given_up} == {"gave_up"}:
            break
        offset += retry_schedule.BACKOFF_CAP + 2
        later(offset)
        _sweep(app)
    assert [_rows(app, b["id"])[0]["state"] for b in given_up] == ["gave_up", "gave_up"]
    failing = [_checkout(app, cart())[0] for _ in range(3)]
    assert [_rows(app, b["id"])[0]["state"] for b in failing] == ["failed"] * 3
    order_receiver.mode = "ok"  # the receiver is back after a long outage
    runner = app.test_cli_runner()

    replayed = runner.invoke(args=["orders", "replay", "--failed"])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.count("-> merchant: delivered") == 3
    assert sorted(o["order"]["id"] for o in order_receiver.orders) == sorted(
        b["order"]["id"] for b in failing
    )
    assert [_rows(app, b["id"])[0]["state"] for b in given_up] == ["gave_up", "gave_up"]

    replayed = runner.invoke(args=["orders", "replay", "--gave-up"])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.count("-> merchant: delivered") == 2
    assert len(order_receiver.deliveries) == 5  # each order once
    assert "every order has been delivered" in runner.invoke(args=["orders", "failed"]).output
    nothing = runner.invoke(args=["orders", "replay", "--failed", "--gave-up"])
    assert nothing.output.strip() == "no failed or gave up orders"
    both = runner.invoke(args=["orders", "replay", given_up[0]["id"], "--failed"])
    assert both.exit_code == 2  # an id or flags, not both
