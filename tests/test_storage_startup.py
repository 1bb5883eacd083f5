"""First start on a brand-new database: workers starting at once never fail "database is locked".

On a new file the switch to WAL upgrades a shared lock to an exclusive one, and SQLite answers
"database is locked" at once (no busy wait) to all but one of several processes doing it
together: 3-5 of 800 switches failed that way before shop.storage.sqlite_tuning retried them.
Four processes open one fresh file at the same instant (a barrier), many times over, through
the store's own connection set-up; then four whole apps start together a few times.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, text

from shop.storage.sqlite_tuning import tune

WORKERS = 4
CONNECT_ROUNDS = 40
APP_ROUNDS = 2


def _connect(db: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        engine = create_engine(f"sqlite:///{db}")
        tune(engine)
        barrier.wait(10)
        with engine.begin() as conn:  # connect (pragmas, WAL), then BEGIN IMMEDIATE in turn
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        results.put("ok")
    except BaseException as exc:  # the parent reports what failed
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        os._exit(0)


def _start_app(db: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        from shop import create_app
        from tests.conftest import DATA

        barrier.wait(10)
        create_app(
            {
                "SHOP_CONFIG": str(DATA / "config.json"),
                "SHOP_PRODUCTS": str(DATA / "products.json"),
                "SHOP_DATABASE_URL": f"sqlite:///{db}",
                "SHOP_API_KEYS": "",
            }
        )
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        os._exit(0)


def _together(target, db: Path) -> list[str]:  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(WORKERS), context.SimpleQueue()
    procs = [context.Process(target=target, args=(str(db), barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    outcomes = [results.get() for _ in procs if not results.empty()]
    return [o for o in outcomes if o != "ok"] + ["no answer"] * (WORKERS - len(outcomes))


def test_processes_opening_a_new_file_together_never_fail(tmp_path: Path):
    failures: list[str] = []
    for round_ in range(CONNECT_ROUNDS):
        db = tmp_path / f"new-{round_}.sqlite3"
        failures += _together(_connect, db)
        db.unlink()
    total = CONNECT_ROUNDS * WORKERS
    assert not failures, f"{len(failures)} of {total} opens failed: {failures[:3]}"


def test_workers_starting_together_on_a_new_database_never_fail(tmp_path: Path):
    failures: list[str] = []
    for round_ in range(APP_ROUNDS):
        db = tmp_path / f"shop-{round_}.sqlite3"
        failures += _together(_start_app, db)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
            assert conn.execute("SELECT count(*) FROM stock_levels").fetchone()[0] > 0
        conn.close()
    assert not failures, f"{len(failures)} of {APP_ROUNDS * WORKERS} starts failed: {failures}"
