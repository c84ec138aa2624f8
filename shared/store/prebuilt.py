"""The hot path's statements, compiled once per dialect and run on the driver's own cursor.

Why: for the few statements a checkpoint cycle runs (open a checkpoint, find it, resolve it, append
its history) SQLAlchemy's per-call execution work — the cache key of the statement, the compiled
cache lookup, the execution context, the result object — cost more CPU than the database's own
work: py-spy put ~45 % of the decider's samples there. A `Prebuilt` keeps SQLAlchemy's own compiled
form of the statement (its SQL text with the dialect's casts, its parameter order, its bind and
result processors: JSON in and out, booleans on SQLite), so what is stored and what is read back
is exactly what `conn.execute()` would store and read.

The statement still goes through `Connection._cursor_execute`, SQLAlchemy's path for statements
sent on a raw cursor: the engine events see it (counting.py counts it) and a driver error is
wrapped and handled as any other (a lost connection invalidates the pool's connection, and the
store maps it to StoreUnavailable). It runs inside the caller's transaction.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement


@dataclass(slots=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order (qmark), or None (named: a dict)
    binds: dict[str, Callable[[Any], Any]]
    defaults: dict[str, Any]  # the binds the statement carries itself (a LIMIT, a literal in a WHERE)
    types: dict[str, Any]  # result column → its SQL type; empty when the statement returns no rows
    # From the first execution's cursor (a driver may choose a processor by the column's wire type);
    # read once: psycopg builds the whole description anew each time it is asked for it.
    names: list[str] | None = None
    results: dict[str, Callable[[Any], Any]] | None = None  # result column → processor, where one is needed


class Prebuilt:
    """One statement with bound parameters: `rows(conn, params)` → list of dicts, keyed by column."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}
        self._ordinary: dict[frozenset[str], bool] = {}  # parameter sets that take conn.execute()

    def _plan(self, dialect: Dialect, keys: frozenset[str]) -> _Plan:
        plan = self._plans.get((dialect.name, keys))
        if plan is None:
            # column_keys: the SET / VALUES columns of an INSERT or UPDATE built without .values(),
            # as conn.execute(stmt, params) compiles it.
            compiled: Any = self.stmt.compile(dialect=dialect, column_keys=sorted(keys))
            names = tuple(compiled.positiontup) if compiled.positional else None
            # Every bind the caller does not name is one the statement carries itself. A column
            # default of the table is not among them: see `uses_defaults`.
            defaults = {k: v for k, v in compiled.construct_params(_check=False).items() if k not in keys}
            types = {keyname: type_ for keyname, _name, _objects, type_ in compiled._result_columns}
            plan = _Plan(compiled.string, names, dict(compiled._bind_processors), defaults, types)
            self._plans[(dialect.name, keys)] = plan
        return plan

    def uses_defaults(self, keys: frozenset[str]) -> bool:
        """An INSERT that leaves out a column with a Python-side default: SQLAlchemy computes it at
        execution time, which a raw cursor would skip — such a call takes the ordinary path."""
        table = getattr(self.stmt, "table", None)
        if table is None or not getattr(self.stmt, "is_insert", False):
            return False
        return any(col.default is not None and col.key not in keys for col in table.c)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        keys = frozenset(params)
        if keys not in self._ordinary:
            self._ordinary[keys] = self.uses_defaults(keys)
        if self._ordinary[keys]:
            result = conn.execute(self.stmt, dict(params))  # type: ignore[call-overload]
            return [dict(r._mapping) for r in result] if result.returns_rows else []
        plan = self._plan(conn.dialect, keys)
        values = {**plan.defaults, **params} if plan.defaults else dict(params)
        for name, proc in plan.binds.items():
            if name in values:
                values[name] = proc(values[name])
        args: Any = tuple(values.get(n) for n in plan.positional) if plan.positional is not None else values
        cursor = conn.connection.cursor()
        try:
            conn._cursor_execute(cursor, plan.sql, args)
            if not plan.types:
                return []
            if plan.names is None:
                description = cursor.description
                plan.results = _result_processors(conn.dialect, plan.types, description)
                plan.names = [d[0] for d in description]
            names = plan.names
            out = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        finally:
            cursor.close()
        if plan.results:
            for row in out:
                for key, proc in plan.results.items():
                    if key in row:
                        row[key] = proc(row[key])
        return out

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row as a dict (the caller's annotation names its TypedDict), or None."""
        rows = self.rows(conn, params)
        return rows[0] if rows else None


def _result_processors(dialect: Dialect, types: dict[str, Any], description: Any) -> dict[str, Callable[[Any], Any]]:
    out = {}
    for entry in description:
        name, type_code = entry[0], entry[1]
        type_ = types.get(name)
        proc = type_._cached_result_processor(dialect, type_code) if type_ is not None else None
        if proc is not None:
            out[name] = proc
    return out
