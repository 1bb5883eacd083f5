"""Is the database usable? Two questions, asked at two times.

Before a reload, without starting the store (`flask --app app check`, `check_database`):
reachable, writable, and with the tables this version expects. It opens its own engine,
writes one row inside a transaction it rolls back, and compares the tables and columns with
the models. A SQLite file that does not exist yet is only noted: the store creates it.

While the store runs (`problems`, `require_writable`, `failure`), whether the database can
be trusted with a payment now, and why not, each reason one sentence a merchant can act on:
- the file itself (SQLite): removed or replaced since the store opened it (its inode, checked
  by every read and transaction), or on a disk with too little room left (looked at at most
  once a second per worker while there is room, on every ask while there is not);
- failures the store met (`failure`, called where a database error is caught): a full disk,
  a damaged file, a file that cannot be written, a database server that does not answer.
  They are reported for a minute after they were last met; a damaged file until restart;
- a probe (`problems(probe=True)`: /healthz and `check`): a quick_check of the SQLite file on a
  fresh connection (at most every 30 s per worker), or one round trip to PostgreSQL.
`require_writable` is what checkout asks right before it charges: a payment is only taken
when its record can be stored.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field

from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from shop.errors import DatabaseUnavailableError
from shop.storage.connections import Database, database
from shop.storage.database_url import with_driver
from shop.storage.failures import DAMAGED, STICKY, classify, low_space, sentence
from shop.storage.sqlite_tuning import open_connection


@dataclass(slots=True)
class DatabaseHealth:
    """What the check found: problems stop a reload; notes are for information."""

    shown_url: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_database(url: str) -> DatabaseHealth:
    """Open SHOP_DATABASE_URL, try a rolled-back write and compare the schema."""
    from shop.storage.models import ProviderEvent, db

    parsed = make_url(with_driver(url))
    health = DatabaseHealth(parsed.render_as_string(hide_password=True))
    where = f"SHOP_DATABASE_URL ({health.shown_url})"
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:":
            health.notes.append(f"{where} is an in-memory database: nothing is kept.")
            return health
        path = os.path.abspath(path)
        parsed = parsed.set(database=path)
        if not os.path.exists(path):
            folder = os.path.dirname(path)
            existing = folder
            while existing and not os.path.isdir(existing):
                existing = os.path.dirname(existing)
            if not os.access(existing or "/", os.W_OK):
                health.problems.append(
                    f"{where}: {path} does not exist and the store cannot create it "
                    f"({existing} is not writable by this user); create {folder} and give "
                    "it to the user the store runs as."
                )
            else:
                health.notes.append(f"{path} does not exist yet; the store creates it at start.")
            return health
        if not os.access(path, os.W_OK) or not os.access(os.path.dirname(path), os.W_OK):
            health.problems.append(
                f"{where}: {path} or its folder is not writable by this user; the store needs "
                "both (SQLite writes its -wal and -shm files beside it)."
            )
        if os.path.isfile(path):
            health.problems.extend(_file_problems(path))  # issue 16: damaged, or no room left
    engine = create_engine(parsed)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            missing_tables, missing_columns = [], []
            for table in db.metadata.sorted_tables:
                if not inspector.has_table(table.name):
                    missing_tables.append(table.name)
                    continue
                present = {c["name"] for c in inspector.get_columns(table.name)}
                missing_columns += [
                    f"{table.name}.{c.name}" for c in table.columns if c.name not in present
                ]
            if missing_tables or missing_columns:
                health.notes.append(
                    "the schema is older than this version (missing: "
                    f"{', '.join(missing_tables + missing_columns)}); the store adds them at "
                    "its next start or reload."
                )
            if ProviderEvent.__tablename__ not in missing_tables:
                conn.execute(
                    insert(ProviderEvent.__table__).values(
                        id=f"shop-check:{secrets.token_hex(8)}",
                        type="shop.check",
                        session_id=None,
                        received_at=0,
                    )
                )
            conn.rollback()
    except SQLAlchemyError as exc:
        health.problems.append(
            f"{where} cannot be used: {_reason(exc)}; check that the database server is "
            "running, the credentials are right and the user may write."
        )
    finally:
        engine.dispose()
    return health


# ------------------------------------------------ while the store runs (issue 16)

# Less room than this on the database's disk and no payment is taken: its record (a few
# pages, and the WAL's growth until the next checkpoint) might not fit.
MIN_FREE_BYTES = 2 * 1024 * 1024
# Enough room, once seen, is believed this long per worker (a statvfs per request is CPU the
# answer does not need); too little room is looked at again on every request, so the store
# resumes as soon as space is back. A write that fails for want of space in between is
# classified by `failure` anyway.
SPACE_EVERY_SECONDS = 1.0
RECENT_SECONDS = 60.0
PROBE_EVERY_SECONDS = 30.0


def problems(probe: bool = True) -> list[str]:
    """Every reason the database cannot be trusted now, as sentences; [] when healthy."""
    bound = database()
    try:
        bound.check_file()
        space = _space_problem(bound, fresh=True)
        if space:
            bound.note("space", space)
    except DatabaseUnavailableError:
        pass  # noted with its sentence by check_file
    if probe:
        _probe(bound)
    now = time.monotonic()
    found = []
    for kind, (said, when) in list(bound.failures.items()):
        if kind in STICKY or now - when < RECENT_SECONDS:
            found.append(said)
        else:
            bound.failures.pop(kind, None)
    return found


def require_writable() -> None:
    """Raise DatabaseUnavailableError unless a payment's record can be stored right now."""
    bound = database()
    bound.check_file()
    for kind in STICKY:
        if kind in bound.failures:
            raise DatabaseUnavailableError(bound.failures[kind][0])
    space = _space_problem(bound)
    if space:
        bound.note("space", space)
        raise DatabaseUnavailableError(space)


def failure(exc: BaseException) -> DatabaseUnavailableError | None:
    """Note a database failure that is not a bug and return the 503 to answer; else None."""
    if isinstance(exc, DatabaseUnavailableError):
        return exc
    found = classify(exc)
    if found is None:
        return None
    kind, detail = found
    bound = database()
    where = bound.path if bound.own else bound.engine.url.render_as_string(hide_password=True)
    said = sentence(kind, where, detail)
    bound.note(kind, said)
    return DatabaseUnavailableError(said)


def _file_problems(path: str) -> list[str]:
    """A damaged SQLite file or a disk without room, as `check` says them (store running or not)."""
    found = [said for said in [_low_space(path)] if said]
    try:
        conn = open_connection(path)
        try:
            rows = conn.execute("PRAGMA quick_check(3)").fetchall()
        finally:
            conn.close()
    except Exception as exc:
        kind = classify(exc)
        if kind is None:
            raise
        return [*found, sentence(kind[0], path, kind[1])]
    if rows != [("ok",)]:
        found.append(sentence(DAMAGED, path, "; ".join(str(r[0]) for r in rows)[:200]))
    return found


def _low_space(path: str) -> str | None:
    try:
        stat = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return None
    free = stat.f_bavail * stat.f_frsize
    return low_space(path, free) if free < MIN_FREE_BYTES else None


def _space_problem(bound: Database, fresh: bool = False) -> str | None:
    """Too little room on the SQLite file's disk, as a sentence; at most one statvfs a second
    while there is room (`fresh`: look now)."""
    if not bound.own:
        return None
    now = time.monotonic()
    if not fresh and now - bound.space_ok_at < SPACE_EVERY_SECONDS:
        return None
    said = _low_space(bound.path)
    bound.space_ok_at = float("-inf") if said else now
    return said


def _probe(bound: Database) -> None:
    now = time.monotonic()
    if now - bound.probed_at < PROBE_EVERY_SECONDS:
        return
    bound.probed_at = now
    try:
        if bound.own:
            if "file" in bound.failures:
                return  # the file is gone or swapped: nothing to look into
            # A fresh connection: a worker's own connections may serve pages from their cache.
            conn = open_connection(bound.path)
            try:
                rows = conn.execute("PRAGMA quick_check(3)").fetchall()
            finally:
                conn.close()
            if rows != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in rows)[:200]
                bound.note(DAMAGED, sentence(DAMAGED, bound.path, detail))
        else:
            with bound.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
    except Exception as exc:
        if failure(exc) is None:
            raise
