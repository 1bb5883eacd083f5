"""The current thread's write transaction: begun by the first statement, ended by commit/rollback.

Every write in the app goes through here (`execute`, `write`, `commit`, `rollback`,
`savepoint`, `info`), so one request's statements share one transaction whatever module
they come from.

On an SQLite file (the default) a transaction runs on the thread's own sqlite3 connection:
a turn in the writer queue, BEGIN IMMEDIATE, the statements (Core, compiled once by
shop.storage.compiled_sql), COMMIT. SQLAlchemy's ORM Session is not involved: its bookkeeping per
transaction (session transaction, pool checkout and check-in, events) cost more CPU than the
SQLite work itself (docs/decisions.md, Benchmark). Two cases still use the Session, so nothing here
needs an ORM of its own:

- a transaction the Session has already begun in this thread (an ORM `get`, `add` or
  entity SELECT came first): every statement joins it, and commit/rollback end it;
- databases other than an SQLite file (PostgreSQL, in-memory SQLite): always.

An ORM operation while this thread holds a transaction of its own raises at once (it would
wait for the writer queue this thread holds); do it first, or use Core statements.

Hooks replace Session events: `on_begin` runs first in every transaction (the idempotency
claim), `on_commit` after a commit (hand-offs), `on_rollback` after a rollback.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shop.storage import checkpoints
from shop.storage.compiled_sql import Result, sql_and_args
from shop.storage.connections import Database, database, write_on
from shop.storage.models import db
from shop.storage.sqlite_tuning import set_own_transaction_check

Write = Callable[[Any, Mapping[str, Any] | None], int]

_BEGIN_HOOKS: list[Callable[[Write], None]] = []
_COMMIT_HOOKS: list[Callable[[], None]] = []
_ROLLBACK_HOOKS: list[Callable[[], None]] = []


def on_begin(hook: Callable[[Write], None]) -> Callable[[Write], None]:
    """Run `hook(write)` as the first thing in every transaction (decorator)."""
    _BEGIN_HOOKS.append(hook)
    return hook


def on_commit(hook: Callable[[], None]) -> Callable[[], None]:
    """Run `hook()` after every commit (decorator)."""
    _COMMIT_HOOKS.append(hook)
    return hook


def on_rollback(hook: Callable[[], None]) -> Callable[[], None]:
    """Run `hook()` after every rollback (decorator)."""
    _ROLLBACK_HOOKS.append(hook)
    return hook


class _Thread(threading.local):
    """What this thread holds: per-request info, and its own open transaction, if any."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.conn: sqlite3.Connection | None = None  # set while our transaction is open
        self.queue: Any = None
        self.dialect: Any = None  # the open transaction's engine's, to compile for
        self.savepoints = 0


_LOCAL = _Thread()


def after_commit(action: Callable[[], None]) -> None:
    """Run `action()` once the current transaction commits; drop it if it rolls back.

    For what must count only what was kept (a metric of sessions opened): a request whose
    change rolls back (a retry whose Idempotency-Key was known after all) counts nothing.
    """
    _LOCAL.info.setdefault(_AFTER_COMMIT, []).append(action)


def info() -> dict[str, Any]:
    """This thread's scratch space for the current unit of work (cleared by `reset`)."""
    return _LOCAL.info


def active() -> bool:
    """True while a transaction (ours or the Session's) is open in this thread."""
    return _LOCAL.conn is not None or _session_active()


def execute(statement: Any, params: Mapping[str, Any] | None = None) -> Any:
    """Run a Core statement in the current transaction (beginning one); return its result."""
    conn = _connection()
    if conn is None:
        return db.session.execute(statement, params or {})
    sql, args = sql_and_args(statement, _LOCAL.dialect, params)
    try:
        cursor = conn.execute(sql, args)
        rows = cursor.fetchall() if cursor.description else []
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc
    return Result(cursor.rowcount, rows, cursor.description)


def write(statement: Any, params: Mapping[str, Any] | None = None) -> int:
    """Run one INSERT/UPDATE/DELETE in the current transaction; return its rowcount."""
    conn = _connection()
    if conn is None:
        return write_on(db.session.connection(), statement, params)
    return _write_raw(conn, statement, params)


def commit() -> None:
    """Commit the open transaction, if any, then run the commit hooks."""
    conn = _LOCAL.conn
    if conn is None:
        if db.session.registry.has():
            db.session.commit()  # the Session's transaction: its events run the hooks
        return
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _end(conn, "ROLLBACK")
        _run(_ROLLBACK_HOOKS)
        raise DBAPIError.instance("COMMIT", (), exc, sqlite3.Error) from exc
    _release()
    checkpoints.committed()
    _run(_COMMIT_HOOKS)


def rollback() -> None:
    """Roll back the open transaction, if any, then run the rollback hooks."""
    conn = _LOCAL.conn
    if conn is None:
        if db.session.registry.has():
            db.session.rollback()
        return
    _end(conn, "ROLLBACK")
    _run(_ROLLBACK_HOOKS)


@contextmanager
def savepoint() -> Iterator[Callable[[], None]]:
    """A SAVEPOINT in the current transaction; call the yielded function to roll back to it."""
    conn = _connection()
    if conn is None:
        nested = db.session.begin_nested()
        yield nested.rollback
        if nested.is_active:  # not rolled back
            nested.commit()
        return
    _LOCAL.savepoints += 1
    name = f"shop_sp{_LOCAL.savepoints}"
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield lambda: conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
    finally:
        _LOCAL.savepoints -= 1


def reset() -> None:
    """End this thread's unit of work: roll back what is still open, forget its info; then
    run a WAL checkpoint if one is due (shop.storage.checkpoints: outside the writer turn)."""
    try:
        if _LOCAL.conn is not None:
            rollback()
    finally:
        _LOCAL.info.clear()
        session = db.session
        if session.registry.has():  # remove() would look it up twice, then raise to say no
            session.remove()
    checkpoints.after_unit_of_work()


# ---------------------------------------------------------------- internals

_AFTER_COMMIT = "shop.after_commit"  # info(): the actions of after_commit, in order


@on_commit
def _run_after_commit() -> None:
    for action in _LOCAL.info.pop(_AFTER_COMMIT, ()):
        action()


@on_rollback
def _drop_after_commit() -> None:
    _LOCAL.info.pop(_AFTER_COMMIT, None)


def _session_active() -> bool:
    if not _SESSIONS_IN_TRANSACTION:  # none anywhere: no need to look up this context's Session
        return False
    session = db.session
    return session.registry.has() and session().in_transaction()


def _own_database() -> Database | None:
    """The app's Database when transactions here run on our own connection, else None."""
    bound = database()
    return bound if bound.own else None


def _connection() -> sqlite3.Connection | None:
    """This thread's open transaction's connection, beginning one; None: use the Session."""
    conn = _LOCAL.conn
    if conn is not None:
        return conn
    bound = _own_database()
    if bound is None or _session_active():
        return None
    return _begin(bound)


def _begin(bound: Database) -> sqlite3.Connection:
    bound.check_file()  # never write to a file that is no longer the store's
    conn = bound.writer()
    queue = bound.queue
    assert queue is not None
    queue.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:
        queue.release()
        if isinstance(exc, sqlite3.Error):
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
        raise
    _LOCAL.conn, _LOCAL.queue, _LOCAL.dialect = conn, queue, bound.dialect
    try:
        for hook in _BEGIN_HOOKS:
            hook(lambda statement, params=None: _write_raw(conn, statement, params))
    except BaseException:
        _end(conn, "ROLLBACK")
        raise
    return conn


def _end(conn: sqlite3.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except sqlite3.Error:
        pass  # no transaction left to end (SQLite rolled it back itself)
    finally:
        _release()


def _release() -> None:
    queue, _LOCAL.conn, _LOCAL.queue = _LOCAL.queue, None, None
    _LOCAL.savepoints = 0
    if queue is not None:
        queue.release()


def _run(hooks: Sequence[Callable[[], None]]) -> None:
    for hook in hooks:
        hook()


def _write_raw(conn: sqlite3.Connection, statement: Any, params: Mapping[str, Any] | None) -> int:
    sql, args = sql_and_args(statement, _LOCAL.dialect, params)
    try:
        cursor = conn.execute(sql, args)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc
    count = cursor.rowcount
    cursor.close()
    return count


# Sessions holding a transaction, in any thread (`in_transaction()` is true exactly between
# these two events). The hot path never uses the Session, so this is usually empty.
_SESSIONS_IN_TRANSACTION: weakref.WeakSet[Session] = weakref.WeakSet()


@event.listens_for(Session, "after_transaction_create", insert=True)
def _session_transaction_created(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        _SESSIONS_IN_TRANSACTION.add(session)


@event.listens_for(Session, "after_transaction_end", insert=True)
def _session_transaction_ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        _SESSIONS_IN_TRANSACTION.discard(session)


# The Session's transactions run the same hooks, so code need not know which one it is in.


@event.listens_for(Session, "after_begin")
def _session_began(session: Session, _transaction: Any, connection: Any) -> None:
    for hook in _BEGIN_HOOKS:
        hook(lambda statement, params=None: write_on(connection, statement, params))


@event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    if not session.in_nested_transaction():
        _run(_COMMIT_HOOKS)


@event.listens_for(Session, "after_rollback")
def _session_rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        _run(_ROLLBACK_HOOKS)


def _held_by_this_thread() -> bool:
    return _LOCAL.conn is not None


set_own_transaction_check(_held_by_this_thread)
