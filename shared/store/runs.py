"""Run, node-execution and run-history rows: the queries the poller (their writer) and readers use.

A run is keyed by (app, Dify run id): the app that reported or started it owns it, and another app
naming the same id gets a run of its own (STYLE 14). Status changes are monotonic: an event that
arrives late (at-least-once, several consumers) never turns a finished node or run back into a
running one.
"""
from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.rows import NodeRow, RunHistoryRow, RunRow, as_row, as_rows
from shared.store.tables import discovery_watermarks, node_executions, run_history, runs
from shared.views import NODE_FINAL, RUN_TERMINAL

r = runs.c


def _text(values: dict[str, Any]) -> dict[str, Any]:
    """Strings for text columns with any NUL replaced by U+FFFD: Dify's own events (a node's error, its
    title) may carry one, PostgreSQL refuses it in text, and a run's news must not be dead-lettered
    for it (issue 13). JSON values keep theirs (a JSON column holds it escaped)."""
    return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in values.items()}


def _insert(conn: Connection, table: Table, values: dict[str, Any], key: list[str]) -> bool:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table).values(**values)
    stmt = ins.on_conflict_do_nothing(index_elements=key).returning(*[table.c[k] for k in key])
    return conn.execute(stmt).first() is not None


def _key(app: str, run_id: str):
    return and_(r.app == app, r.id == run_id)


def get(conn: Connection, app: str, run_id: str) -> RunRow | None:
    return as_row(conn.execute(select(runs).where(_key(app, run_id))).first())


def find(conn: Connection, run_id: str, apps: Collection[str] | None) -> RunRow | None:
    """A run by its Dify id among `apps` (None: any). Two apps owning one id happens only when an app
    names another's run; the one tracked first is shown."""
    q = select(runs).where(r.id == run_id, true() if apps is None else r.app.in_(sorted(apps)))
    return as_row(conn.execute(q.order_by(r.tracked_at).limit(1)).first())


def ensure(conn: Connection, app: str, run_id: str, source: str, **fields: Any) -> bool:
    """Start tracking a run (idempotent). Fields fill in what is still unknown on an existing row."""
    now = time.time()
    fields = _text(fields)
    values = dict(id=run_id, app=app, source=source, status=fields.pop("status", None) or "running",
                  stale_record=False, streamed=False, poll_failures=0, tracked_at=now, updated_at=now,
                  next_poll_at=fields.pop("next_poll_at", now), poll_interval=1.0, **fields)
    if _insert(conn, runs, values, ["app", "id"]):
        return True
    existing = get(conn, app, run_id)
    assert existing is not None  # the insert found it
    fill = {k: v for k, v in fields.items() if v is not None and existing.get(k) is None}
    if fill:
        conn.execute(update(runs).where(_key(app, run_id)).values(**fill, updated_at=now))
    return False


def update_run(conn: Connection, app: str, run_id: str, **values: Any) -> None:
    conn.execute(update(runs).where(_key(app, run_id)).values(**_text(values), updated_at=time.time()))


def set_status(conn: Connection, app: str, run_id: str, status: str, **values: Any) -> bool:
    """Change our status unless the run already ended (a terminal status is never overwritten);
    True when it changed."""
    values = _text({**values, "status": status})
    result = conn.execute(
        update(runs).where(_key(app, run_id), r.status != values["status"], r.status.notin_(RUN_TERMINAL))
        .values(updated_at=time.time(), **values).returning(r.id))
    return result.first() is not None


def claim_due(conn: Connection, owner: str, now: float, lease_s: float, limit: int) -> list[RunRow]:
    """Lease due runs to one poller so that no run is polled by two pollers at once."""
    free = or_(r.lease_until.is_(None), r.lease_until < now)
    candidates = conn.execute(
        select(r.app, r.id).where(r.next_poll_at <= now, free).order_by(r.next_poll_at).limit(limit)).all()
    claimed = []
    for app, run_id in candidates:
        row = conn.execute(
            update(runs).where(_key(app, run_id), r.next_poll_at <= now, free)
            .values(lease_owner=owner, lease_until=now + lease_s).returning(*runs.c)).first()
        if row is not None:
            claimed.append(as_row(row))
    return claimed


def release(conn: Connection, app: str, run_id: str, owner: str, **values: Any) -> None:
    conn.execute(update(runs).where(_key(app, run_id), r.lease_owner == owner)
                 .values(lease_owner=None, lease_until=None, updated_at=time.time(), **values))


def continuation_for(conn: Connection, checkpoint_id: str) -> RunRow | None:
    return as_row(conn.execute(select(runs).where(r.continuation_of == checkpoint_id).limit(1)).first())


def listing(conn: Connection, *, apps: Collection[str] | None = None, status: str | None = None,
            app: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[RunRow], int]:
    cond: list[ColumnElement[bool]] = [true() if apps is None else r.app.in_(sorted(apps))]
    if status:
        cond.append(r.status == status)
    if app:
        cond.append(r.app == app)
    where = and_(*cond)
    q = select(runs).where(where).order_by(r.tracked_at.desc(), r.id).limit(limit).offset(offset)
    total = conn.execute(select(func.count()).select_from(runs).where(where)).scalar_one()
    return as_rows(conn.execute(q)), total


# ---------------------------------------------------------------------- node executions
n = node_executions.c


def upsert_node(conn: Connection, app: str, run_id: str, execution_id: str, status: str, **values: Any) -> bool:
    """Record a node execution's state; True when its status changed."""
    values, status = _text(values), _text({"status": status})["status"]
    row = {"retries": 0, **values, "app": app, "id": execution_id, "run_id": run_id, "status": status,
           "seq": _next_seq(conn, app, run_id)}
    if _insert(conn, node_executions, row, ["app", "id"]):
        return True
    changed = conn.execute(
        update(node_executions)
        .where(n.app == app, n.id == execution_id, n.run_id == run_id, n.status.notin_(NODE_FINAL))
        .values(status=status, **{k: v for k, v in values.items() if v is not None})
        .returning(n.status)).first()
    return changed is not None


def _next_seq(conn: Connection, app: str, run_id: str) -> int:
    current = conn.execute(select(func.max(n.seq)).where(n.app == app, n.run_id == run_id)).scalar()
    return (current or 0) + 1


def nodes_of(conn: Connection, app: str, run_id: str) -> list[NodeRow]:
    q = select(node_executions).where(n.app == app, n.run_id == run_id).order_by(n.seq)
    return as_rows(conn.execute(q))


# ---------------------------------------------------------------------- history and watermarks
def append_history(conn: Connection, app: str, run_id: str, kind: str, *, status: str | None = None,
                   node_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
    conn.execute(run_history.insert().values(app=app, run_id=run_id, at=time.time(), kind=kind, detail=detail,
                                             **_text({"status": status, "node_id": node_id})))


def history_of(conn: Connection, app: str, run_id: str) -> list[RunHistoryRow]:
    h = run_history.c
    q = select(run_history).where(h.app == app, h.run_id == run_id).order_by(h.id)
    return as_rows(conn.execute(q))


def watermark(conn: Connection, app: str) -> float | None:
    return conn.execute(select(discovery_watermarks.c.created_at).where(discovery_watermarks.c.app == app)).scalar()


def set_watermark(conn: Connection, app: str, created_at: float) -> None:
    now = time.time()
    w = discovery_watermarks.c
    if not _insert(conn, discovery_watermarks, dict(app=app, created_at=created_at, updated_at=now), ["app"]):
        conn.execute(update(discovery_watermarks).where(w.app == app, w.created_at < created_at)
                     .values(created_at=created_at, updated_at=now))


# ---------------------------------------------------------------------- the console's step view
def node_after(conn: Connection, app: str, run_id: str, node_id: str, skip_prefix: str = "hitl_") -> NodeRow | None:
    """The first node this run started after `node_id` (nodes whose id starts with `skip_prefix` — the
    checkpoint recipe's own — are passed over); None when none is recorded."""
    n = node_executions.c
    seen = select(func.max(n.seq)).where(n.app == app, n.run_id == run_id, n.node_id == node_id).scalar_subquery()
    q = (select(node_executions).where(n.app == app, n.run_id == run_id, n.seq > seen,
                                       ~n.node_id.startswith(skip_prefix, autoescape=True))
         .order_by(n.seq).limit(1))
    return as_row(conn.execute(q).first())


def earlier_run_with_node(conn: Connection, app: str, workflow_id: str | None, node_id: str,
                          exclude_run: str) -> str | None:
    """The newest other run of the same app (and workflow, when known) that recorded `node_id`."""
    n = node_executions.c
    q = (select(r.id).join(node_executions, and_(n.app == r.app, n.run_id == r.id))
         .where(r.app == app, r.id != exclude_run, n.node_id == node_id))
    if workflow_id:
        q = q.where(r.workflow_id == workflow_id)
    return conn.execute(q.order_by(r.tracked_at.desc()).limit(1)).scalar()
