"""WAL checkpoints run outside the writer turn (issue 12): no COMMIT of the store's own
connections copies the WAL into the database file (that copy and its fsyncs held every
worker's writes up); the unit of work that makes the process's CHECKPOINT_COMMITS-th commit
copies it after the turn is given back, a quiet store's last commits are folded after
CHECKPOINT_SECONDS, and a WAL grown to RESTART_FRAMES is finished inside the turn so the
next transaction starts it again from its beginning.

Read from the WAL index (the -shm file SQLite keeps beside the database): mxFrame, the frames
the WAL holds, at byte 16 of its header, and nBackfill, the frames already copied into the
database file, at byte 96."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from shop.storage import checkpoints, sqlite_tuning
from shop.storage.connections import database
from tests.conftest import AcpClient


def _wal(db: Path) -> tuple[int, int]:
    """(frames in the WAL, frames copied into the database file)."""
    header = (db.parent / f"{db.name}-shm").read_bytes()[:100]
    (frames,) = struct.unpack_from("=I", header, 16)
    (copied,) = struct.unpack_from("=I", header, 96)
    return frames, copied


@pytest.fixture
def store(make_app, shop_files, monkeypatch):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_COMMITS", 10**9)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 10**9)
    checkpoints._PENDING.commits = 0
    app = make_app()
    return app, AcpClient(app.test_client()), shop_files["db"]


def test_no_commit_copies_the_wal_and_a_due_unit_of_work_does(store, monkeypatch):
    _app, acp, db = store
    for _ in range(120):  # ~1,300 frames: SQLite's own checkpoint would have run at 1,000
        assert acp.create().status_code == 201
    frames, copied = _wal(db)
    assert frames > 1000 and copied == 0
    monkeypatch.setattr(checkpoints, "CHECKPOINT_COMMITS", 1)
    assert acp.create().status_code == 201  # its unit of work ends with the checkpoint
    frames, copied = _wal(db)
    assert copied == frames > 1000
    assert acp.create().status_code == 201  # the next writer starts the WAL again
    assert _wal(db)[0] < 50


def test_a_quiet_store_folds_its_last_commits(store, monkeypatch):
    _app, acp, db = store
    acp.create()
    assert _wal(db)[1] == 0
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)
    acp.get("/checkout_sessions/cs_missing")  # any unit of work after them copies them
    frames, copied = _wal(db)
    assert copied == frames > 0


def test_a_long_wal_is_finished_inside_the_turn_and_started_again(store, monkeypatch):
    app, acp, db = store
    for _ in range(20):
        acp.create()
    turns: list[int] = []
    real = sqlite_tuning.WriterQueue.acquire

    def counting(self):
        turns.append(1)
        return real(self)

    monkeypatch.setattr(sqlite_tuning.WriterQueue, "acquire", counting)
    with app.app_context():
        bound = database()
        monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 10**6)
        frames, copied = checkpoints.checkpoint(bound)  # a short WAL: no turn taken
        assert turns == [] and copied == frames > 0
        acp.create()
        turns.clear()  # the create's own turn
        monkeypatch.setattr(checkpoints, "RESTART_FRAMES", 1)
        frames, copied = checkpoints.checkpoint(bound)  # long: finished in the turn
        assert turns == [1] and copied == frames
    acp.create()
    assert _wal(db)[0] < 50  # started again


def test_a_checkpoint_never_fails_the_request_it_follows(store, monkeypatch):
    app, _acp, _db = store
    monkeypatch.setattr(checkpoints, "CHECKPOINT_COMMITS", 1)

    def failing(*args, **kwargs):
        raise checkpoints.sqlite3.OperationalError("disk I/O error")

    with app.app_context():
        monkeypatch.setattr(database().__class__, "writer", failing)
        assert checkpoints.checkpoint(database()) is None
