"""`flask --app app backup PATH`: a consistent copy of the SQLite file, taken while it runs.

SQLite's online backup API copies every page in one step under a read snapshot: in WAL mode
writers go on meanwhile, and the copy is the database as of one commit. It is written beside
PATH first, checked (quick_check), switched out of WAL so it is one self-contained file, and
only then renamed to PATH, so PATH is never a half-written copy. Restoring is documented in
docs/deploy.md (Backup and restore). PostgreSQL has its own tool (pg_dump): not done here.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from shop.errors import ConfigError
from shop.storage.connections import database
from shop.storage.sqlite_tuning import open_connection


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: str
    size: int
    sessions: int
    undelivered: int  # order messages not delivered yet (sent after a restore)


def backup_to(path: str) -> BackupResult:
    """Copy the running store's SQLite database to `path`; return what the copy holds."""
    bound = database()
    if not bound.own:
        raise ConfigError(
            "backup copies an SQLite file; SHOP_DATABASE_URL is not one. For PostgreSQL use "
            "pg_dump (docs/deploy.md, Backup and restore)."
        )
    bound.check_file()
    target = os.path.abspath(path)
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(bound.path))
    partial = f"{target}.{os.getpid()}.part"
    source = open_connection(bound.path)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # all pages in one step: one consistent snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            checked = copy.execute("PRAGMA quick_check").fetchone()[0]
            if checked != "ok":
                raise ConfigError(f"the backup copy failed its check ({checked}); try again")
            sessions = copy.execute("SELECT count(*) FROM checkout_sessions").fetchone()[0]
            undelivered = copy.execute(
                "SELECT count(*) FROM order_deliveries WHERE state != 'delivered'"
            ).fetchone()[0]
        finally:
            copy.close()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        source.close()
    return BackupResult(target, os.path.getsize(target), sessions, undelivered)
