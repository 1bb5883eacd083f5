"""SQL compiled once per statement and dialect, sent to sqlite3 without SQLAlchemy's per-call work.

`compile_once` gives a statement's SQL and a plan that reads its positional args straight
from the caller's dict (checked against SQLAlchemy's own `construct_params` when compiled);
`sql_and_args` also takes statements with per-call IN lists. `Result` answers like the part
of SQLAlchemy's Result API the app uses. `rows_of` and `one_of` write statements that
compile once. shop.storage.connections and shop.storage.transaction run what this compiles.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Executable, or_, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound


def rows_of(model: Any) -> Any:
    """SELECT every column of a model's table: rows with the columns as attributes.

    Used instead of an ORM entity SELECT, which needs the Session (shop/transaction.py).
    """
    return select(*model.__table__.c)


def one_of(column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)` for a fixed list, as ORs of equalities, so `read`/`write` compile it
    once (SQLAlchemy renders even a literal IN list per execution)."""
    return or_(*(column == value for value in values))


@dataclass(frozen=True, slots=True)
class _Plan:
    """construct_params's answer read straight from the caller's dict (checked once, at compile).

    Its rules, for the binds of one name (one key): the value passed under the key, else under
    the name, else the last one's own value (a literal) unless one of them is required.
    """

    fetch: Callable[[dict[str, Any]], Any]  # itemgetter of the positions' names
    defaults: dict[str, Any]  # by name: the values of binds that need none passed
    renamed: frozenset[str]  # keys of binds named otherwise (literals): passed, they fall back
    one: bool  # one position: fetch returns the value itself

    def read(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The args for `params`; None when construct_params must answer (or raise)."""
        if type(params) is not dict or not self.renamed.isdisjoint(params):
            return None
        try:
            values = self.fetch({**self.defaults, **params} if self.defaults else params)
        except KeyError:
            return None  # a required value is missing: construct_params raises SQLAlchemy's error
        return (values,) if self.one else values


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for one dialect, and how to turn named parameters into its args."""

    sql: str
    compiled: Any
    positions: tuple[str, ...]
    names: list[Any]  # [the namedtuple class], built from the first cursor description
    plan: _Plan | None = None

    def args(self, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
        if self.plan is not None:
            args = self.plan.read({} if params is None else params)
            if args is not None:
                return args
        values = self.compiled.construct_params(params or {})
        return tuple(values[name] for name in self.positions)

    def row(self, description: Sequence[Any], values: tuple[Any, ...]) -> Any:
        if not self.names:
            fields = [column[0] for column in description]
            self.names.append(namedtuple("Row", fields, rename=True))  # type: ignore[misc]
        return self.names[0]._make(values)


_COMPILED: dict[tuple[int, int], tuple[Executable, Dialect, Compiled | None]] = {}


_MAX_COMPILED = 512


def compile_once(statement: Executable, dialect: Dialect) -> Compiled | None:
    """Compile once per (statement, dialect); None when the plain path must run it.

    Only qmark statements whose parameters and columns need no type conversion qualify
    (strings, integers, text: every hot statement here); expanding IN lists do not.
    """
    key = (id(statement), id(dialect))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is statement and hit[1] is dialect:
        return hit[2]
    compiled: Any = statement.compile(dialect=dialect)
    plain = (
        dialect.paramstyle == "qmark"
        and compiled.positiontup is not None
        and not any(
            b.expanding or b.type._cached_bind_processor(dialect) for b in compiled.binds.values()
        )
        and not any(
            c.type._cached_result_processor(dialect, None)
            for c in getattr(compiled, "_result_columns", ())
        )
    )
    entry = (
        Compiled(compiled.string, compiled, tuple(compiled.positiontup), [], _plan(compiled))
        if plain
        else None
    )
    if len(_COMPILED) >= _MAX_COMPILED:  # statements built per call: keep the cache bounded
        _COMPILED.clear()
    _COMPILED[key] = (statement, dialect, entry)
    return entry


def _plan(compiled: Any) -> _Plan | None:
    """How to read a statement's args without construct_params (~1-2 µs a statement), or None.

    Only for unescaped names, each with one key, all sent, and no callables; the plan must
    then give construct_params's own answer for two probes (every value passed; only the
    required ones) or it is not used.
    """
    binds: dict[Any, str] = compiled.bind_names
    positions = tuple(compiled.positiontup)
    keys: dict[str, str] = {}
    if (
        compiled.escaped_bind_names
        or any(keys.setdefault(name, bind.key) != bind.key for bind, name in binds.items())
        or set(keys) != set(positions)
        or any(bind.callable for bind in binds)
    ):
        return None
    required = {name for bind, name in binds.items() if bind.required}
    plan = _Plan(
        fetch=itemgetter(*positions) if positions else _no_args,
        defaults={name: bind.value for bind, name in binds.items() if name not in required},
        renamed=frozenset(key for name, key in keys.items() if key != name),
        one=len(positions) == 1,
    )
    every = {name: object() for name in keys}
    for probe in (every, {name: every[name] for name in required}):
        try:
            expected = compiled.construct_params(probe)
        except Exception:
            return None
        got = plan.read(probe)
        if (
            got is None
            or len(got) != len(positions)
            or any(value is not expected[name] for value, name in zip(got, positions, strict=True))
        ):
            return None
    return plan


def _no_args(_params: dict[str, Any]) -> tuple[()]:
    return ()


def sql_and_args(
    statement: Any, dialect: Dialect, params: Mapping[str, Any] | None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and positional args to send for a statement (or raw SQL text) and its params."""
    if isinstance(statement, str):
        return statement, tuple(params or ())
    compiled = compile_once(statement, dialect)
    if compiled is not None:
        return compiled.sql, compiled.args(params)
    # Expanding IN lists and the like: the SQL for these values (compiled once, expanded here).
    compiled = _expanding(statement, dialect)
    expanded = compiled.construct_expanded_state(params or {})
    return expanded.statement, tuple(expanded.positional_parameters)


_EXPANDING: dict[int, tuple[Any, Any]] = {}


def _expanding(statement: Any, dialect: Any) -> Any:
    hit = _EXPANDING.get(id(statement))
    if hit is not None and hit[0] is statement:
        return hit[1]
    compiled = statement.compile(dialect=dialect)
    if len(_EXPANDING) >= 512:  # statements built per call: keep the cache bounded
        _EXPANDING.clear()
    _EXPANDING[id(statement)] = (statement, compiled)
    return compiled


class Result:
    """One statement's rows (or rowcount), with the part of SQLAlchemy's Result API we use."""

    def __init__(self, rowcount: int, rows: list[Any], description: Any) -> None:
        self.rowcount = rowcount
        if rows and description:
            fields = [column[0] for column in description]
            make = _row_class(tuple(fields))._make
            rows = [make(row) for row in rows]
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Result:
        """The first column of each row (iterate, or .all() / .first() / .one())."""
        scalars = Result(self.rowcount, [], None)
        scalars._rows = [row[0] for row in self._rows]
        return scalars


_ROW_CLASSES: dict[tuple[str, ...], Any] = {}


def _row_class(fields: tuple[str, ...]) -> Any:
    cls = _ROW_CLASSES.get(fields)
    if cls is None:
        cls = _ROW_CLASSES[fields] = namedtuple("Row", fields, rename=True)  # type: ignore[misc]
    return cls
