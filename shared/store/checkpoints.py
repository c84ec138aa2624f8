"""Checkpoint rows and their history: the queries, nothing else.

Every function takes an open Connection so callers decide the transaction. State changes are
conditional UPDATEs (`... WHERE status = 'open'`) whose row count says who won.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.tables import checkpoints, history

OPEN = "open"


def _row(r) -> dict[str, Any] | None:
    return dict(r._mapping) if r is not None else None


def get(conn: Connection, checkpoint_id: str) -> dict[str, Any] | None:
    return _row(conn.execute(select(checkpoints).where(checkpoints.c.id == checkpoint_id)).first())


def by_key(conn: Connection, run_id: str, node_id: str, round_: int) -> dict[str, Any] | None:
    q = select(checkpoints).where(checkpoints.c.workflow_run_id == run_id, checkpoints.c.node_id == node_id,
                                  checkpoints.c.round == round_)
    return _row(conn.execute(q).first())


def latest(conn: Connection, run_id: str, node_id: str) -> dict[str, Any] | None:
    q = (select(checkpoints).where(checkpoints.c.workflow_run_id == run_id, checkpoints.c.node_id == node_id)
         .order_by(checkpoints.c.round.desc()).limit(1))
    return _row(conn.execute(q).first())


def open_of_run(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    q = select(checkpoints).where(checkpoints.c.workflow_run_id == run_id, checkpoints.c.status == OPEN)
    return [_row(r) for r in conn.execute(q)]


def forms_of_run(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    q = select(checkpoints).where(checkpoints.c.workflow_run_id == run_id, checkpoints.c.kind == "dify-form")
    return [_row(r) for r in conn.execute(q)]


def set_delivery(conn: Connection, checkpoint_id: str, delivery: str, detail: str | None, now: float) -> None:
    values: dict[str, Any] = dict(delivery=delivery, delivery_detail=detail, updated_at=now)
    if delivery == "delivered":
        values["delivered_at"] = now
    conn.execute(update(checkpoints).where(checkpoints.c.id == checkpoint_id).values(**values))


def resume_overdue(conn: Connection, before: float, limit: int = 100) -> list[dict[str, Any]]:
    """Delivered forms whose run has not been seen leaving `paused` since `before`."""
    q = (select(checkpoints).where(checkpoints.c.delivery == "delivered", checkpoints.c.delivered_at <= before)
         .limit(limit))
    return [_row(r) for r in conn.execute(q)]


def rounds(conn: Connection, run_id: str, node_id: str) -> list[dict[str, Any]]:
    q = (select(checkpoints).where(checkpoints.c.workflow_run_id == run_id, checkpoints.c.node_id == node_id)
         .order_by(checkpoints.c.round))
    return [_row(r) for r in conn.execute(q)]


def insert_if_absent(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert a new checkpoint unless its key exists; True when this call created it."""
    dialect = conn.dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(checkpoints).values(**values)
    # RETURNING rather than rowcount: psycopg 3 reports -1 for a plain INSERT ... ON CONFLICT here.
    stmt = ins.on_conflict_do_nothing(index_elements=["workflow_run_id", "node_id", "round"]).returning(checkpoints.c.id)
    return conn.execute(stmt).first() is not None


def attach(conn: Connection, checkpoint_id: str, reply_to: str | None, correlation_id: str | None) -> bool:
    """Point an open checkpoint at the Dify call now held for it; False if no longer open."""
    result = conn.execute(
        update(checkpoints)
        .where(checkpoints.c.id == checkpoint_id, checkpoints.c.status == OPEN)
        .values(reply_to=reply_to, correlation_id=correlation_id, attach_count=checkpoints.c.attach_count + 1,
                updated_at=time.time())
        .returning(checkpoints.c.id))
    return result.first() is not None


def resolve(conn: Connection, checkpoint_id: str, *, status: str, action: str, output: Any, feedback: str | None,
            decided_by: str, reason: str, channel: str | None, published: bool = True) -> dict[str, Any] | None:
    """Close an open checkpoint; returns the updated row, or None when another decision won.

    `published=False` marks a resolution nobody will re-send on redelivery (a deadline expiry): the
    sweeper publishes it again until mark_published() records the broker's confirm."""
    now = time.time()
    result = conn.execute(
        update(checkpoints)
        .where(checkpoints.c.id == checkpoint_id, checkpoints.c.status == OPEN)
        .values(status=status, action=action, output=output, feedback=feedback, decided_by=decided_by,
                reason=reason, decision_channel=channel, resolved_at=now, updated_at=now, published=published)
        .returning(*checkpoints.c))
    return _row(result.first())


def mark_published(conn: Connection, checkpoint_id: str) -> None:
    conn.execute(update(checkpoints).where(checkpoints.c.id == checkpoint_id).values(published=True))


def due(conn: Connection, now: float, limit: int = 200) -> list[str]:
    q = (select(checkpoints.c.id).where(checkpoints.c.status == OPEN, checkpoints.c.deadline <= now)
         .order_by(checkpoints.c.deadline).limit(limit))
    return [r.id for r in conn.execute(q)]


def unpublished(conn: Connection, before: float, limit: int = 200) -> list[dict[str, Any]]:
    q = (select(checkpoints).where(checkpoints.c.published.is_(False), checkpoints.c.resolved_at <= before)
         .limit(limit))
    return [_row(r) for r in conn.execute(q)]


def listing(conn: Connection, *, status: str | None = None, app: str | None = None, run_id: str | None = None,
            limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    cond = []
    if status:
        cond.append(checkpoints.c.status == status)
    if app:
        cond.append(checkpoints.c.app == app)
    if run_id:
        cond.append(checkpoints.c.workflow_run_id == run_id)
    where = and_(*cond) if cond else True
    order = checkpoints.c.deadline.asc() if status == OPEN else checkpoints.c.created_at.desc()
    rows = [_row(r) for r in conn.execute(select(checkpoints).where(where).order_by(order).limit(limit).offset(offset))]
    total = conn.execute(select(func.count()).select_from(checkpoints).where(where)).scalar_one()
    return rows, total


def count_open(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(checkpoints).where(checkpoints.c.status == OPEN)).scalar_one()


# ---------------------------------------------------------------------- history
def append_history(conn: Connection, checkpoint_id: str, kind: str, *, actor: str | None = None,
                   channel: str | None = None, action: str | None = None, outcome: str | None = None,
                   code: str | None = None, message_id: str | None = None, idempotency_key: str | None = None,
                   detail: dict[str, Any] | None = None) -> None:
    conn.execute(history.insert().values(
        checkpoint_id=checkpoint_id, at=time.time(), kind=kind, actor=actor, channel=channel, action=action,
        outcome=outcome, code=code, message_id=message_id, idempotency_key=idempotency_key, detail=detail))


def history_of(conn: Connection, checkpoint_id: str) -> list[dict[str, Any]]:
    q = select(history).where(history.c.checkpoint_id == checkpoint_id).order_by(history.c.id)
    return [_row(r) for r in conn.execute(q)]


def earlier_attempt(conn: Connection, checkpoint_id: str, message_id: str | None,
                    idempotency_key: str | None) -> dict[str, Any] | None:
    """The recorded outcome of this same decision (same message id or idempotency key), if any."""
    conds = []
    if message_id:
        conds.append(history.c.message_id == message_id)
    if idempotency_key:
        conds.append(history.c.idempotency_key == idempotency_key)
    if not conds:
        return None
    from sqlalchemy import or_

    q = (select(history).where(history.c.checkpoint_id == checkpoint_id, history.c.kind == "decision", or_(*conds))
         .order_by(history.c.id).limit(1))
    return _row(conn.execute(q).first())


def winning_decision(conn: Connection, checkpoint_id: str) -> dict[str, Any] | None:
    q = (select(history).where(history.c.checkpoint_id == checkpoint_id, history.c.outcome == "applied")
         .order_by(history.c.id).limit(1))
    return _row(conn.execute(q).first())
