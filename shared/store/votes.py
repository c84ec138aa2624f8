"""Votes of a quorum: one per reviewer and checkpoint (the primary key says so)."""
from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.rows import VoteRow, as_rows
from shared.store.tables import votes

v = votes.c


def cast(conn: Connection, *, checkpoint_id: str, voter: str, action: str, channel: str | None, at: float,
         message_id: str | None, feedback: str | None) -> bool:
    """Record a vote; False when this reviewer has voted on this checkpoint already."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(votes).values(checkpoint_id=checkpoint_id, voter=voter, action=action, channel=channel, at=at,
                                message_id=message_id, feedback=feedback)
    return conn.execute(stmt.on_conflict_do_nothing(index_elements=["checkpoint_id", "voter"])
                        .returning(v.voter)).first() is not None


def of(conn: Connection, checkpoint_id: str) -> list[VoteRow]:
    return as_rows(conn.execute(select(votes).where(v.checkpoint_id == checkpoint_id).order_by(v.at, v.voter)))
