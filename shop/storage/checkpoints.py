"""WAL checkpoints, run outside the cross-worker writer turn (issue 12).

SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL frames: it copies
the pages into the database file and fsyncs both files while that transaction still holds
the writer turn, so every worker's next write waits for the disk. Under bench/flow.py's load
the same store without any fsync (synchronous=OFF, never shipped) served 13% more, which is
what those waits cost. So the store's own SQLite connections turn the automatic checkpoint
off (shop.storage.sqlite_tuning), and the thread that ends a unit of work
(`transaction.reset`: after a request's answer is sent, or at the end of a background round)
runs a PASSIVE checkpoint outside the turn once its process has made CHECKPOINT_COMMITS
commits, or has commits older than CHECKPOINT_SECONDS: the other workers go on writing
while it copies and waits for the disk.

Only a writer that finds every frame copied starts the WAL again from its beginning, and a
checkpoint outside the turn rarely leaves that under load (others append while it runs). So
once the WAL holds RESTART_FRAMES frames, the checkpoint is finished inside the turn: what is
left to copy is only what was appended meanwhile, and the next transaction starts the WAL
again, so under a sustained load the WAL file keeps about RESTART_FRAMES pages (~50 MB; a
quiet store's checkpoints copy everything and its WAL stays small).
"""

from __future__ import annotations

import sqlite3
import time

from shop.errors import DatabaseUnavailableError
from shop.storage.connections import Database, database

# Measured under bench/flow.py's load (4 workers, A/B rounds of 6 s): 32 commits and 4,000
# frames served 1,436 req/s, 128 and 8,000 1,447, 128 and 12,000 1,461-1,470; SQLite's own
# checkpoint in the turn 1,362.
CHECKPOINT_COMMITS = 128  # this process's commits between two checkpoints
CHECKPOINT_SECONDS = 5.0  # a quiet store folds its last commits after this long
RESTART_FRAMES = 12_000  # a WAL this long (47 MB) is finished inside the turn, then restarted


class _Pending:
    """This process's commits since its last checkpoint (threads race; a count off by one
    only moves a checkpoint by one commit)."""

    commits = 0
    since = 0.0  # time.monotonic() of the first of them


_PENDING = _Pending()


def committed() -> None:
    """Count a commit made on the store's own connection (shop.storage.transaction)."""
    if _PENDING.commits == 0:
        _PENDING.since = time.monotonic()
    _PENDING.commits += 1


def after_unit_of_work() -> None:
    """Run a checkpoint if one is due (called with no transaction open in this thread)."""
    commits = _PENDING.commits
    if commits < CHECKPOINT_COMMITS and (
        commits == 0 or time.monotonic() - _PENDING.since < CHECKPOINT_SECONDS
    ):
        return
    try:
        bound = database()
    except RuntimeError:  # no app here: its next unit of work will
        return
    if bound.own:
        checkpoint(bound)


def checkpoint(bound: Database) -> tuple[int, int] | None:
    """Copy the WAL into the database file; return (frames in the WAL, frames copied).

    Never raises for the database's sake: a checkpoint only tidies up, and the next
    transaction's own checks say what is wrong with the file.
    """
    _PENDING.commits = 0
    try:
        bound.check_file()
        conn = bound.writer()
        frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:]
        if frames < RESTART_FRAMES:
            return frames, copied
        queue = bound.queue
        assert queue is not None
        queue.acquire()
        try:
            frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:]
        finally:
            queue.release()
        return frames, copied
    except (sqlite3.Error, DatabaseUnavailableError):
        return None
