"""Giving the disk back the space purged rows held (SQLite), off the request path.

A new store's file is created with auto_vacuum=INCREMENTAL (shop.storage.sqlite_tuning), so
after a purge `give_back` frees the emptied pages with `PRAGMA incremental_vacuum` and a WAL
checkpoint truncates the file. A file made before that (auto_vacuum NONE) is converted once,
by one VACUUM, when at least a quarter of it is free pages. Both take this store's writer
queue, so checkouts wait for them as for any transaction (a few milliseconds; a VACUUM of a
large file, once, longer) instead of failing. PostgreSQL gives space back by itself
(autovacuum): nothing to do there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from shop.storage.connections import database
from shop.storage.sqlite_tuning import INCREMENTAL_VACUUM, open_connection

log = logging.getLogger("shop.storage")

# Convert an old file (auto_vacuum NONE) by VACUUM only when this much of it is free pages.
CONVERT_FREE_SHARE = 0.25
CONVERT_MIN_FREE_PAGES = 256


@dataclass(frozen=True, slots=True)
class SpaceResult:
    """The file's size before and after (bytes, the main file and its WAL); 0 on PostgreSQL."""

    before: int
    after: int
    vacuumed: bool = False  # an old file was converted by one VACUUM


def give_back() -> SpaceResult:
    """Free the pages purged rows left empty and shrink the file; return its sizes."""
    bound = database()
    if not bound.own:
        return SpaceResult(0, 0)
    bound.check_file()
    before = _size(bound.path)
    queue = bound.queue
    assert queue is not None
    # Its own connection: the thread's writer may be used by a transaction of this thread.
    conn = open_connection(bound.path)
    vacuumed = False
    try:
        mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        queue.acquire()
        try:
            if mode == INCREMENTAL_VACUUM:
                if free:
                    # executescript steps the pragma to the end; execute() would run one
                    # step, which frees a single page.
                    conn.executescript("PRAGMA incremental_vacuum;")
            elif free >= CONVERT_MIN_FREE_PAGES and free >= pages * CONVERT_FREE_SHARE:
                log.warning(
                    "converting %s to incremental vacuum once (VACUUM of %d MB; checkouts "
                    "wait for it): later purges give space back by themselves",
                    bound.path,
                    before // 2**20,
                )
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("VACUUM")
                vacuumed = True
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            queue.release()
    finally:
        conn.close()
    return SpaceResult(before, _size(bound.path), vacuumed)


def _size(path: str) -> int:
    total = 0
    for name in (path, f"{path}-wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(name)
    return total
