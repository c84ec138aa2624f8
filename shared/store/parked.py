"""Decisions that arrived before their checkpoint (the decider was behind on its request queue, or
a reviewer answered from a notification faster than the request travelled). A decision accepted
with `202` is a promise: it waits here and is applied when its checkpoint opens, or settles as
`expired` (visible at GET /v1/decisions/{id}) if no checkpoint ever comes."""
from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.prebuilt import Prebuilt
from shared.store.rows import ParkedRow, as_row, as_rows
from shared.store.tables import parked_decisions

p = parked_decisions.c
PARKED = "parked"
LOCK_CLASS = 727275  # the first key of pg_advisory_xact_lock(int, int) for a (run, node); 727274 migrates


def serialize(conn: Connection, run_id: str, node_id: str) -> None:
    """One transaction at a time, per (run, node), between "no checkpoint yet: park the decision" and
    "a new checkpoint: take what is parked for it". Under READ COMMITTED each could otherwise miss
    the other's uncommitted row and both commit: a decision parked for a checkpoint that is already
    open, applied never (the frozen-decider race of issue 13). The lock is held until commit, so the
    second of the two sees the first's row. SQLite's write transactions are serial already."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"{run_id}\x00{node_id}".encode(), digest_size=4).digest()
    conn.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                 {"cls": LOCK_CLASS, "key": int.from_bytes(digest, "big", signed=True)})


def park(conn: Connection, *, message_id: str, run_id: str, node_id: str, apps: Collection[str], actor: str,
         decision: dict[str, Any], now: float, ttl_s: float) -> bool:
    """Keep a decision for (run, node); False if this message was parked before (a redelivery)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(parked_decisions).values(
        id=message_id, workflow_run_id=run_id, node_id=node_id, apps=sorted(apps), actor=actor, decision=decision,
        parked_at=now, expires_at=now + ttl_s, status=PARKED).on_conflict_do_nothing(index_elements=["id"])
    return conn.execute(stmt.returning(p.id)).first() is not None


def get(conn: Connection, message_id: str) -> ParkedRow | None:
    return as_row(conn.execute(select(parked_decisions).where(p.id == message_id)).first())


# Every new checkpoint looks (prebuilt.py: the hot path).
_WAITING = Prebuilt(select(parked_decisions).where(p.workflow_run_id == bindparam("b_run"),
                                                  p.node_id == bindparam("b_node"), p.status == PARKED)
                    .order_by(p.parked_at, p.id))


def waiting_for(conn: Connection, app: str, run_id: str, node_id: str) -> list[ParkedRow]:
    """Parked decisions a new checkpoint of (app, run, node) takes, oldest first."""
    rows: list[ParkedRow] = _WAITING.rows(conn, {"b_run": run_id, "b_node": node_id})  # type: ignore[assignment]
    return [row for row in rows if app in row["apps"]]


def settle(conn: Connection, message_id: str, status: str, now: float, *, checkpoint_id: str | None = None,
           code: str | None = None) -> bool:
    """parked → applied | refused | expired, once; False if it was settled already."""
    result = conn.execute(update(parked_decisions).where(p.id == message_id, p.status == PARKED)
                          .values(status=status, checkpoint_id=checkpoint_id, code=code, settled_at=now)
                          .returning(p.id))
    return result.first() is not None


def expired(conn: Connection, now: float, limit: int = 200) -> list[ParkedRow]:
    q = (select(parked_decisions).where(p.status == PARKED, p.expires_at <= now)
         .order_by(p.expires_at).limit(limit))
    return as_rows(conn.execute(q))
