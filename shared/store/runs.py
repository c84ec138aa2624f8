"""Run, node-execution and run-history rows: the queries the poller (their writer) and readers use.

Status changes are monotonic: an event that arrives late (at-least-once, several consumers) never
turns a finished node or run back into a running one.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.tables import discovery_watermarks, node_executions, run_history, runs

RUN_TERMINAL = {"succeeded", "failed", "stopped", "partial-succeeded"}
NODE_FINAL = {"succeeded", "failed", "exception", "stopped"}


def _row(r) -> dict[str, Any] | None:
    return dict(r._mapping) if r is not None else None


def _insert(conn: Connection, table, values: dict[str, Any], key: list[str]) -> bool:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table).values(**values)
    stmt = ins.on_conflict_do_nothing(index_elements=key).returning(*[table.c[k] for k in key])
    return conn.execute(stmt).first() is not None


def get(conn: Connection, run_id: str) -> dict[str, Any] | None:
    return _row(conn.execute(select(runs).where(runs.c.id == run_id)).first())


def ensure(conn: Connection, run_id: str, app: str, source: str, **fields: Any) -> bool:
    """Start tracking a run (idempotent). Fields fill in what is still unknown on an existing row."""
    now = time.time()
    values = dict(id=run_id, app=app, source=source, status=fields.pop("status", None) or "running",
                  stale_record=False, streamed=False, poll_failures=0, tracked_at=now, updated_at=now,
                  next_poll_at=fields.pop("next_poll_at", now), poll_interval=1.0, **fields)
    if _insert(conn, runs, values, ["id"]):
        return True
    existing = get(conn, run_id)
    fill = {k: v for k, v in fields.items() if v is not None and existing.get(k) is None}
    if fill:
        conn.execute(update(runs).where(runs.c.id == run_id).values(**fill, updated_at=now))
    return False


def update_run(conn: Connection, run_id: str, **values: Any) -> None:
    conn.execute(update(runs).where(runs.c.id == run_id).values(**values, updated_at=time.time()))


def set_status(conn: Connection, run_id: str, status: str, **values: Any) -> bool:
    """Change our status unless the run already ended (a terminal status is never overwritten);
    True when it changed."""
    result = conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.status != status, runs.c.status.notin_(RUN_TERMINAL))
        .values(status=status, updated_at=time.time(), **values).returning(runs.c.id))
    return result.first() is not None


def claim_due(conn: Connection, owner: str, now: float, lease_s: float, limit: int) -> list[dict[str, Any]]:
    """Lease due runs to one poller so that no run is polled by two pollers at once."""
    candidates = conn.execute(
        select(runs.c.id).where(runs.c.next_poll_at <= now,
                                or_(runs.c.lease_until.is_(None), runs.c.lease_until < now))
        .order_by(runs.c.next_poll_at).limit(limit)).scalars().all()
    claimed = []
    for run_id in candidates:
        row = conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.next_poll_at <= now,
                               or_(runs.c.lease_until.is_(None), runs.c.lease_until < now))
            .values(lease_owner=owner, lease_until=now + lease_s).returning(*runs.c)).first()
        if row is not None:
            claimed.append(_row(row))
    return claimed


def release(conn: Connection, run_id: str, owner: str, **values: Any) -> None:
    conn.execute(update(runs).where(runs.c.id == run_id, runs.c.lease_owner == owner)
                 .values(lease_owner=None, lease_until=None, updated_at=time.time(), **values))


def continuation_for(conn: Connection, checkpoint_id: str) -> dict[str, Any] | None:
    return _row(conn.execute(select(runs).where(runs.c.continuation_of == checkpoint_id).limit(1)).first())


def listing(conn: Connection, *, status: str | None = None, app: str | None = None, limit: int = 50,
            offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    cond = [c for c in (runs.c.status == status if status else None, runs.c.app == app if app else None)
            if c is not None]
    where = and_(*cond) if cond else True
    q = select(runs).where(where).order_by(runs.c.tracked_at.desc()).limit(limit).offset(offset)
    total = conn.execute(select(func.count()).select_from(runs).where(where)).scalar_one()
    return [_row(r) for r in conn.execute(q)], total


def count_by_status(conn: Connection) -> dict[str, int]:
    return {s: n for s, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))}


# ---------------------------------------------------------------------- node executions
def upsert_node(conn: Connection, run_id: str, execution_id: str, status: str, **values: Any) -> bool:
    """Record a node execution's state; True when its status changed."""
    row = {"retries": 0, **values, "id": execution_id, "run_id": run_id, "status": status, "seq": _next_seq(conn, run_id)}
    if _insert(conn, node_executions, row, ["id"]):
        return True
    changed = conn.execute(
        update(node_executions)
        .where(node_executions.c.id == execution_id, node_executions.c.status.notin_(NODE_FINAL))
        .values(status=status, **{k: v for k, v in values.items() if v is not None})
        .returning(node_executions.c.status)).first()
    return changed is not None


def _next_seq(conn: Connection, run_id: str) -> int:
    current = conn.execute(select(func.max(node_executions.c.seq)).where(node_executions.c.run_id == run_id)).scalar()
    return (current or 0) + 1


def nodes_of(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    q = select(node_executions).where(node_executions.c.run_id == run_id).order_by(node_executions.c.seq)
    return [_row(r) for r in conn.execute(q)]


# ---------------------------------------------------------------------- history and watermarks
def append_history(conn: Connection, run_id: str, kind: str, *, status: str | None = None,
                   node_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
    conn.execute(run_history.insert().values(run_id=run_id, at=time.time(), kind=kind, status=status,
                                             node_id=node_id, detail=detail))


def history_of(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    q = select(run_history).where(run_history.c.run_id == run_id).order_by(run_history.c.id)
    return [_row(r) for r in conn.execute(q)]


def watermark(conn: Connection, app: str) -> float | None:
    return conn.execute(select(discovery_watermarks.c.created_at).where(discovery_watermarks.c.app == app)).scalar()


def set_watermark(conn: Connection, app: str, created_at: float) -> None:
    now = time.time()
    if not _insert(conn, discovery_watermarks, dict(app=app, created_at=created_at, updated_at=now), ["app"]):
        conn.execute(update(discovery_watermarks)
                     .where(discovery_watermarks.c.app == app, discovery_watermarks.c.created_at < created_at)
                     .values(created_at=created_at, updated_at=now))
