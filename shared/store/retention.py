"""Retention: resolved checkpoints (with their history, votes and timers), finished runs (with their
nodes and history) and settled parked decisions older than a cutoff are deleted — after a `prune`
anchor records the final chain head of every pruned checkpoint, so `hitl audit verify` still holds
for what remains and knows what was removed on purpose."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, select

from shared.store import audit
from shared.store.tables import (
    checkpoints,
    history,
    node_executions,
    parked_decisions,
    run_history,
    runs,
    timers,
    votes,
)
from shared.views import RUN_TERMINAL

BATCH = 500


@dataclass
class Pruned:
    checkpoints: int = 0
    history_rows: int = 0
    runs: int = 0
    parked: int = 0


def prune(conn: Connection, before: float, now: float, batch: int = BATCH) -> Pruned:
    """One batch of deletions older than `before`; call until it prunes nothing."""
    c = checkpoints.c
    done = Pruned()
    rows = conn.execute(select(c.id, c.head_hash).where(c.status != "open", c.resolved_at < before)
                        .order_by(c.resolved_at).limit(batch)).all()
    if rows:
        ids = [r.id for r in rows]
        if audit.anchor(conn, now, kind="prune", heads={r.id: r.head_hash or "" for r in rows}) is None:
            return done  # another decider is writing an anchor right now: prune on the next round
        done.history_rows = conn.execute(delete(history).where(history.c.checkpoint_id.in_(ids))).rowcount or 0
        conn.execute(delete(votes).where(votes.c.checkpoint_id.in_(ids)))
        conn.execute(delete(timers).where(timers.c.checkpoint_id.in_(ids)))
        done.checkpoints = conn.execute(delete(checkpoints).where(c.id.in_(ids))).rowcount or 0
    r = runs.c
    old_runs = conn.execute(select(r.app, r.id).where(r.status.in_(sorted(RUN_TERMINAL)), r.updated_at < before)
                            .limit(batch)).all()
    n, h = node_executions.c, run_history.c
    for app, run_id in old_runs:
        conn.execute(delete(node_executions).where(and_(n.app == app, n.run_id == run_id)))
        conn.execute(delete(run_history).where(and_(h.app == app, h.run_id == run_id)))
        conn.execute(delete(runs).where(and_(r.app == app, r.id == run_id)))
    done.runs = len(old_runs)
    p = parked_decisions.c
    done.parked = conn.execute(delete(parked_decisions).where(p.status != "parked", p.settled_at < before)
                               ).rowcount or 0
    return done
