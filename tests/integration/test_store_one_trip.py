"""A checkpoint's write with its history row, on both stores: one statement on PostgreSQL (a
data-modifying CTE, shared/store/one_trip.py), two on SQLite. Either way the same rows are stored,
the chain verifies, and a write that does not happen (a key that exists, a decision that lost, a
chain head that moved) appends nothing."""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from shared import metrics
from shared.store import audit
from shared.store import checkpoints as store
from shared.store.tables import history

pytestmark = pytest.mark.integration


def new_values(run: str) -> dict:
    now = time.time()
    return dict(id=str(uuid.uuid4()), app="demo", kind="http", workflow_run_id=run, node_id="draft", round=1,
                status="open", mode="hold", node_output={"text": "ü", "n": [1, None]}, timeout_s=300,
                deadline=now + 300, on_timeout="abort", assignees=["alice"], max_rounds=5, created_at=now,
                updated_at=now, attach_count=1, published=True, policy=None, default_output=None)


def first_row(values: dict) -> dict:
    """As the decider writes it: what the reviewer is shown is hashed into the chain's first row."""
    return dict(at=values["created_at"], kind="opened", actor="me", channel="dify", action=None, outcome=None,
                code=None, message_id="m-1", idempotency_key=None,
                detail={"shown": audit.shown_hash(values), "ü": [1, 2]})


def decision_row(now: float, message_id: str = "m-2") -> dict:
    return dict(at=now, kind="decision", actor="alice", channel="api", action="approve", outcome="applied",
                code=None, message_id=message_id, idempotency_key="k-1", detail={"why": "fine"})


RESOLVE = dict(status="resolved", action="approve", output={"text": "ok"}, feedback=None, decided_by="alice",
               reason="decision", channel="api")


def rows_of(conn, checkpoint_id: str) -> list[dict]:
    return [dict(r) for r in conn.execute(select(history).where(history.c.checkpoint_id == checkpoint_id)
                                          .order_by(history.c.id)).mappings()]


def statements() -> float:
    return metrics.store_statements._value.get()


def test_a_new_checkpoint_and_its_first_row_are_written_together_and_once(db):
    values = new_values(f"run-{uuid.uuid4().hex[:8]}")
    with db.write() as conn:
        before = statements()
        cp = store.insert_with_history(conn, values, first_row(values))
        spent = statements() - before
        other = {**values, "id": str(uuid.uuid4())}
        again = store.insert_with_history(conn, other, first_row(other))
    assert spent == (1 if db.url.startswith("postgresql") else 2)
    assert cp is not None and cp["node_output"] == {"text": "ü", "n": [1, None]} and cp["published"] is True
    assert again is None  # the key exists: no checkpoint, no row
    with db.read() as conn:
        (row,) = rows_of(conn, cp["id"])
        assert row["prev_hash"] is None and row["hash"] == cp["head_hash"]
        assert row["detail"] == {"shown": audit.shown_hash(values), "ü": [1, 2]} and row["kind"] == "opened"
        assert store.get(conn, cp["id"]) == cp
        broken, counts = audit.verify(conn)
    assert broken is None and counts["rows"] >= 1


def test_a_decision_resolves_and_appends_its_row_in_one_write(db):
    values = new_values(f"run-{uuid.uuid4().hex[:8]}")
    with db.write() as conn:
        cp = store.insert_with_history(conn, values, first_row(values))
    now = time.time()
    with db.write() as conn:
        before = statements()
        resolved = store.resolve_with_history(conn, cp, decision_row(now), now=now, **RESOLVE)
        spent = statements() - before
        lost = store.resolve_with_history(conn, cp, decision_row(now, "m-3"), now=now, **RESOLVE)
    assert spent == (1 if db.url.startswith("postgresql") else 2)
    assert resolved is not None and resolved["status"] == "resolved" and resolved["output"] == {"text": "ok"}
    assert resolved["decision_channel"] == "api" and resolved["resolved_at"] == now
    assert lost is None  # no longer open: nothing appended
    with db.read() as conn:
        first, second = rows_of(conn, cp["id"])
        assert second["prev_hash"] == first["hash"] == cp["head_hash"]
        assert second["hash"] == resolved["head_hash"] and second["message_id"] == "m-2"
        assert second["detail"] == {"why": "fine"} and second["idempotency_key"] == "k-1"
        assert audit.verify(conn)[0] is None


def test_a_head_that_moved_since_the_read_resolves_nothing_and_appends_nothing(db):
    values = new_values(f"run-{uuid.uuid4().hex[:8]}")
    with db.write() as conn:
        cp = store.insert_with_history(conn, values, first_row(values))
        audit.append(conn, cp["id"], dict(at=time.time(), kind="claim", actor="bob"))  # moves the head
    now = time.time()
    with db.write() as conn:
        assert store.resolve_with_history(conn, cp, decision_row(now), now=now, **RESOLVE) is None
    with db.read() as conn:
        assert [r["kind"] for r in rows_of(conn, cp["id"])] == ["opened", "claim"]
        assert store.get(conn, cp["id"])["status"] == "open"
        assert audit.verify(conn)[0] is None
