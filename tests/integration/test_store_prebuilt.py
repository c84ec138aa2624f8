"""shared/store/prebuilt.py on SQLite and on PostgreSQL: a statement run on the driver's cursor stores
and reads back exactly what SQLAlchemy's `conn.execute()` does (JSON in and out, booleans, NULLs),
is counted as a statement, and fails as SQLAlchemy would (a wrapped driver error)."""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from shared import metrics
from shared.store import checkpoints as store
from shared.store.prebuilt import Prebuilt
from shared.store.tables import checkpoints, history

pytestmark = pytest.mark.integration

_BY_ID = select(checkpoints).where(checkpoints.c.id == bindparam("b_id"))


def values(**extra):
    now = time.time()
    row = dict(id=str(uuid.uuid4()), app="demo", kind="http", workflow_run_id=f"run-{uuid.uuid4().hex[:8]}",
               node_id="draft", round=1, status="open", mode="hold", node_output={"text": "ü", "n": [1, None]},
               timeout_s=300, deadline=now + 300, on_timeout="abort", assignees=["alice"], max_rounds=5,
               created_at=now, updated_at=now, attach_count=1, published=False, policy=None,
               default_output=None)
    row.update(extra)
    return row


def test_a_row_written_and_read_on_the_cursor_equals_sqlalchemys(db):
    row = values()
    with db.write() as conn:
        created = store.insert_if_absent(conn, row)  # the prebuilt INSERT … RETURNING
    with db.read() as conn:
        ordinary = dict(conn.execute(_BY_ID, {"b_id": row["id"]}).one()._mapping)
        prebuilt = Prebuilt(_BY_ID).first(conn, {"b_id": row["id"]})
    assert created == ordinary == prebuilt
    assert prebuilt["node_output"] == {"text": "ü", "n": [1, None]}
    assert prebuilt["published"] is False and prebuilt["assignees"] == ["alice"]
    assert prebuilt["policy"] is None and prebuilt["tally"] is None


def test_a_missing_row_is_none_and_an_update_returns_the_new_row(db):
    row = values()
    with db.write() as conn:
        store.insert_if_absent(conn, row)
        assert store.get(conn, "no-such-id") is None
        resolved = store.resolve_with_history(
            conn, store.get(conn, row["id"]), dict(at=time.time(), kind="decision", actor="alice", channel="cli",
                                                  action="edit", outcome="applied", code=None, message_id="m1",
                                                  idempotency_key=None, detail={"output": [1, 2]}),
            status="resolved", action="edit", output={"edited": True}, feedback=None, decided_by="alice",
            reason="decision", channel="cli", now=time.time())
    assert resolved is not None and resolved["status"] == "resolved" and resolved["output"] == {"edited": True}
    with db.read() as conn:
        assert store.earlier_attempt(conn, row["id"], "m1", None)["detail"]["output"] == [1, 2]
        assert store.winning_decision(conn, row["id"])["actor"] == "alice"


def test_an_insert_that_leaves_a_python_default_out_takes_sqlalchemys_path(db):
    row = values()
    del row["attach_count"], row["published"]  # columns with Python-side defaults (0, True)
    with db.write() as conn:
        created = store.insert_if_absent(conn, row)
    assert created is not None and created["attach_count"] == 0 and created["published"] is True


def test_it_is_counted_and_a_driver_error_is_wrapped_as_sqlalchemy_would(db):
    insert = Prebuilt(history.insert())
    before = metrics.store_statements._value.get()
    with db.write() as conn:
        insert.rows(conn, dict(checkpoint_id="c1", at=1.0, kind="note", detail={"a": 1}))
    assert metrics.store_statements._value.get() > before
    with pytest.raises(IntegrityError), db.write() as conn:
        insert.rows(conn, dict(checkpoint_id=None, at=1.0, kind="note"))  # NOT NULL
