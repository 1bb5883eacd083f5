"""Is the database usable? Reachable, writable, and with the tables this version expects.

Used by `flask --app app check` before a reload, without starting the store: it opens its own
engine, writes one row inside a transaction it rolls back, and compares the tables and columns
with the models. A SQLite file that does not exist yet is only noted: the store creates it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from sqlalchemy import create_engine, insert, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError


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

    parsed = make_url(url)
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
