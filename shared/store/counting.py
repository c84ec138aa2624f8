"""Statements, transactions and round trips to the store, counted in every process that uses it
(`hitl_store_statements_total`, `hitl_store_transactions_total`, `hitl_store_round_trips_total`):
`make bench` reads them before and after a run and divides by the cycles it ran, so that a change
to the store path shows as statements and round trips saved per cycle, not only as cycles/s.

SQLAlchemy's engine events see every statement it executes, on every engine of the process: they
are listened for on the Engine class, so no engine has to be told. The hot path's statements on the
driver's cursor (prebuilt.py) go through SQLAlchemy's `_cursor_execute` and are seen too. What they
do not see are the PRAGMAs db.py sets once per new SQLite connection, which cost nothing per cycle.

On PostgreSQL a transaction costs a round trip of its own at each end: psycopg sends BEGIN before
the first statement, then COMMIT or ROLLBACK. On SQLite the BEGIN (IMMEDIATE) is a statement that
db.py issues itself, so it is counted as one; only the end counts beside the statements. A read
(`Database.read()`) ends its transaction with a rollback: reads show as rolled-back transactions.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared import metrics

_statements = metrics.store_statements
_round_trips = metrics.store_round_trips
_committed = metrics.store_transactions.labels("commit")
_rolled_back = metrics.store_transactions.labels("rollback")


def _on_statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    # An executemany counts once: one call to the driver (SQLAlchemy sends INSERTs of many rows as one).
    _statements.inc()
    _round_trips.inc()


def _on_begin(conn: Any) -> None:
    if conn.dialect.name == "postgresql":  # SQLite's BEGIN is a statement of db.py's, counted above
        _round_trips.inc()


def _on_commit(conn: Any) -> None:
    _committed.inc()
    _round_trips.inc()


def _on_rollback(conn: Any) -> None:
    _rolled_back.inc()
    _round_trips.inc()


_LISTENERS = (("before_cursor_execute", _on_statement), ("begin", _on_begin), ("commit", _on_commit),
              ("rollback", _on_rollback))


def install() -> None:
    """Listen on every engine of the process. Idempotent: a second call adds nothing (no double count)."""
    for name, fn in _LISTENERS:
        if not event.contains(Engine, name, fn):
            event.listen(Engine, name, fn)


__all__ = ["install"]
