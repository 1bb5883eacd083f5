"""What a database failure means for the merchant, in one sentence each (shop.storage.health).

`classify` reads an exception from SQLite or PostgreSQL (bare, or wrapped by SQLAlchemy) and
says which kind of trouble it is: a full disk, a damaged file, a file that cannot be written
or opened, tables gone, a database server that does not answer. Anything else is a bug, not
the database's health, and classifies as None.
"""

from __future__ import annotations

import sqlite3

RESTORE = "docs/deploy.md, Backup and restore"

# Kinds of trouble; DAMAGED stays until the store restarts (a damaged file does not heal).
FULL = "full"
DAMAGED = "damaged"
UNWRITABLE = "unwritable"
UNREACHABLE = "unreachable"
STICKY = frozenset({DAMAGED})

# SQLite primary result codes (sqlite3.h)
_SQLITE_KINDS = {
    13: FULL,  # SQLITE_FULL
    11: DAMAGED,  # SQLITE_CORRUPT
    26: DAMAGED,  # SQLITE_NOTADB
    10: UNWRITABLE,  # SQLITE_IOERR
    8: UNWRITABLE,  # SQLITE_READONLY
    14: UNWRITABLE,  # SQLITE_CANTOPEN
}


def _rescued(path: str, rescued: str | None) -> str:
    if rescued is None:
        return f"restore the last backup to {path} ({RESTORE}) and restart the store"
    return (
        f"its last contents were copied to {rescued}: stop the store, move that file to "
        f"{path}, and start the store again (its undelivered orders are then sent)"
    )


def file_removed(path: str, rescued: str | None = None) -> str:
    """The sentence for a database file deleted while the store runs."""
    return (
        f"The database file {path} was removed while the store was running, so nothing "
        f"can be stored and new checkouts are refused; {_rescued(path, rescued)}."
    )


def file_replaced(path: str, rescued: str | None = None) -> str:
    """The sentence for a database file swapped for another one while the store runs."""
    return (
        f"The database file {path} was replaced by another file while the store was running, "
        "so new checkouts are refused; if the new file is the right one, restart the store to "
        f"use it; otherwise {_rescued(path, rescued)}."
    )


def low_space(path: str, free: int) -> str:
    """The sentence for a disk with too little room for the next payment's record."""
    return (
        f"The disk holding {path} has only {free // 1024} KiB free, too little to record a "
        "payment: new checkouts are refused. Free space on that disk (old logs, backups) or "
        "move the database to a bigger one."
    )


def sentence(kind: str, where: str, detail: str) -> str:
    """The sentence for a failure of `kind` met on the database `where`."""
    if kind == FULL:
        return (
            f"The disk holding {where} is full ({detail}): a write was refused, so new "
            "checkouts are refused. Free space on that disk (old logs, backups) and they "
            "resume by themselves."
        )
    if kind == DAMAGED:
        return (
            f"The database {where} is damaged ({detail}): new checkouts are refused. Stop "
            f"the store, restore the last backup ({RESTORE}), and start it again."
        )
    if kind == UNWRITABLE:
        return (
            f"The database {where} cannot be read or written ({detail}): new checkouts are "
            "refused. Check that the file and its directory exist, are writable by the "
            "store's user, and that the disk is healthy."
        )
    return (
        f"The database server {where} does not answer ({detail}): new checkouts are refused. "
        "Check that PostgreSQL is running and reachable; the store resumes by itself."
    )


def classify(exc: BaseException) -> tuple[str, str] | None:
    """(kind, the driver's own words) for a database failure that is not a bug; else None."""
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _SQLITE_KINDS:
            return _SQLITE_KINDS[code & 0xFF], detail
        if "no such table" in detail:  # the file lost its tables: emptied or swapped
            return DAMAGED, detail
        return None
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith("53"):  # insufficient resources: disk full, out of memory
        return FULL, detail
    if sqlstate in ("XX001", "XX002"):  # data corrupted, index corrupted
        return DAMAGED, detail
    if sqlstate.startswith(("08", "57P")) or (
        not sqlstate and getattr(exc, "connection_invalidated", False)
    ):
        return UNREACHABLE, detail
    if not sqlstate and type(orig).__name__ == "OperationalError":  # cannot connect at all
        return UNREACHABLE, detail
    return None
