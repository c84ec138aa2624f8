"""On PostgreSQL, a checkpoint's write and its history row in one statement: one round trip.

The hot path writes a checkpoint and appends its history row together — a new checkpoint with its
first row, a decision's resolve with its own. On PostgreSQL a data-modifying CTE does both: the
history INSERT selects its values FROM the checkpoint write's RETURNING, so it inserts a row exactly
when the write wrote one (a conflicting key, a decision that lost, a moved chain head: neither). The
statement answers the written checkpoint, as the write alone would. SQLite has no data-modifying
CTEs: there the callers run the two statements (checkpoints.py; a library call each, no network).

Binds: the checkpoint's values as `v_<column>` (SQLAlchemy reserves a column's own name inside a
VALUES or SET clause), the history row's as `h_<column>`, the WHERE clause's as `b_*`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Insert, Update

from shared.store.prebuilt import Prebuilt
from shared.store.tables import CHECKPOINT_KEY, checkpoints, history

_HISTORY_COLUMNS = tuple(col.key for col in history.c if col.key != "id")
# What a resolve sets (checkpoints.resolve_with_history).
RESOLVE_FIELDS = ("status", "action", "output", "feedback", "decided_by", "reason", "decision_channel",
                  "resolved_at", "updated_at", "published", "head_hash")


def _values(columns: Iterable[str]) -> dict[str, Any]:
    return {k: bindparam(f"v_{k}", type_=checkpoints.c[k].type) for k in columns}


def _with_history(write: Insert | Update) -> Prebuilt:
    written = write.returning(*checkpoints.c).cte("written")
    row = select(*(bindparam(f"h_{k}", type_=history.c[k].type) for k in _HISTORY_COLUMNS)).select_from(written)
    appended = history.insert().from_select(list(_HISTORY_COLUMNS), row).cte("appended")
    return Prebuilt(select(written).add_cte(appended))


def _params(values: Mapping[str, Any], row: Mapping[str, Any], **where: Any) -> dict[str, Any]:
    params = {f"v_{k}": v for k, v in values.items()}
    params.update((f"h_{k}", row.get(k)) for k in _HISTORY_COLUMNS)
    params.update(where)
    return params


_RESOLVE = _with_history(
    update(checkpoints)
    .where(checkpoints.c.id == bindparam("b_id"), checkpoints.c.status == "open",
           checkpoints.c.head_hash.is_not_distinct_from(bindparam("b_prev")))
    .values(_values(RESOLVE_FIELDS)))
_OPEN: dict[frozenset[str], Prebuilt] = {}  # one per set of columns given (the decider gives one set)


def resolve(conn: Any, checkpoint_id: str, prev: str | None, fields: Mapping[str, Any],
            row: Mapping[str, Any]) -> Any:
    """The open checkpoint resolved with `fields` and `row` appended, if its chain head is still
    `prev`; None (and nothing written) otherwise."""
    return _RESOLVE.first(conn, _params(fields, row, b_id=checkpoint_id, b_prev=prev))


def can_open(columns: Iterable[str]) -> bool:
    """Every column with a Python-side default is given: a CTE's INSERT would not compute one."""
    given = set(columns)
    return all(col.default is None or col.key in given for col in checkpoints.c)


def open_checkpoint(conn: Any, values: Mapping[str, Any], row: Mapping[str, Any]) -> Any:
    """The checkpoint inserted with its first history row; None (and nothing written) if its key
    exists already. The caller checks `can_open(values)` first."""
    columns = frozenset(values)
    statement = _OPEN.get(columns)
    if statement is None:
        insert = postgresql.insert(checkpoints).values(_values(sorted(columns)))
        statement = _OPEN[columns] = _with_history(insert.on_conflict_do_nothing(index_elements=CHECKPOINT_KEY))
    return statement.first(conn, _params(values, row))
