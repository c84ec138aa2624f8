"""Timer rows of the decision policies (reminders, deadline warnings, escalation steps).

A timer fires once: `fire()` is a conditional update (`fired_at IS NULL`) inside the transaction that
applies its effect, so two deciders sweeping at once cannot both fire it. Timers of checkpoints that
closed are marked `skipped` when the sweep meets them, so the due index stays small."""
from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.rows import TimerRow, as_row, as_rows
from shared.store.tables import timers

t = timers.c


def schedule(conn: Connection, checkpoint_id: str, kind: str, step: int, due_at: float) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(timers).values(checkpoint_id=checkpoint_id, kind=kind, step=step, due_at=due_at)
                 .on_conflict_do_nothing(index_elements=["checkpoint_id", "kind", "step"]))


def due(conn: Connection, now: float, limit: int = 200) -> list[TimerRow]:
    q = select(timers).where(t.fired_at.is_(None), t.due_at <= now).order_by(t.due_at).limit(limit)
    return as_rows(conn.execute(q))


def get(conn: Connection, timer_id: int) -> TimerRow | None:
    return as_row(conn.execute(select(timers).where(t.id == timer_id)).first())


def fire(conn: Connection, timer_id: int, now: float, outcome: str = "fired") -> bool:
    """Claim the timer for this transaction; False if another sweep fired it first."""
    result = conn.execute(update(timers).where(t.id == timer_id, t.fired_at.is_(None))
                          .values(fired_at=now, outcome=outcome).returning(t.id))
    return result.first() is not None


def of(conn: Connection, checkpoint_id: str) -> list[TimerRow]:
    return as_rows(conn.execute(select(timers).where(t.checkpoint_id == checkpoint_id).order_by(t.due_at, t.id)))
