"""The tamper-evident decision log on SQLite and PostgreSQL: every history row is chained, verify
recomputes it and names the first broken link — an edited row, a removed row, a changed output,
a checkpoint deleted with its history — and the CLI says the same."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import delete, text, update

from demo.stack import ROOT
from services.decider.logic import Decider
from shared.access import ALL
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.store import Database, audit
from shared.store import checkpoints as store
from shared.store.tables import checkpoints, history
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def decided(database_url):
    db = Database(database_url)
    db.migrate()
    decider = Decider(db, make_settings(database_url))
    ids = []
    for i in range(3):
        req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft",
                                  node_output=f"text {i}", timeout_s=300, max_rounds=3, round=1)
        cp = decider.on_request(req, "q", "c").checkpoint
        decider.on_decision(DecisionSubmitted(checkpoint_id=cp["id"], action="abort", actor="bob", reason="r"), ALL)
        decider.on_decision(DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="alice"), ALL)
        ids.append(cp["id"])
    with db.write() as conn:
        audit.anchor(conn)
    yield db, ids
    db.dispose()


def check(db):
    with db.read() as conn:
        return audit.verify(conn)


def second_row(db, checkpoint_id):
    with db.read() as conn:
        return store.history_of(conn, checkpoint_id)[1]


def test_an_untouched_log_verifies(decided):
    db, ids = decided
    broken, counts = check(db)
    assert broken is None and counts["rows"] == 9 and counts["checkpoints"] == 3 and counts["anchors"] == 1


def test_a_row_edited_by_sql_is_named(decided):
    db, ids = decided
    row = second_row(db, ids[1])
    with db.write() as conn:
        conn.execute(update(history).where(history.c.id == row["id"]).values(actor="mallory"))
    broken, _ = check(db)
    assert broken.where.startswith(f"checkpoint {ids[1]} history row {row['id']} (decision")
    assert "edited" in broken.why


def test_a_row_removed_from_the_middle_is_named(decided):
    db, ids = decided
    row = second_row(db, ids[0])
    with db.write() as conn:
        conn.execute(delete(history).where(history.c.id == row["id"]))
    broken, _ = check(db)
    assert f"checkpoint {ids[0]}" in broken.where and "removed or inserted" in broken.why


def test_what_the_reviewer_was_shown_cannot_be_changed_afterwards(decided):
    db, ids = decided
    with db.write() as conn:
        conn.execute(update(checkpoints).where(checkpoints.c.id == ids[2]).values(node_output="another text"))
    broken, _ = check(db)
    assert broken.where == f"checkpoint {ids[2]}" and "not what was shown" in broken.why


def test_a_checkpoint_deleted_with_its_whole_history_is_caught_by_the_anchor(decided):
    db, ids = decided
    with db.write() as conn:
        conn.execute(delete(history).where(history.c.checkpoint_id == ids[0]))
        conn.execute(delete(checkpoints).where(checkpoints.c.id == ids[0]))
    broken, _ = check(db)
    assert broken.where.startswith("audit anchor 1") and ids[0] in broken.why


def test_the_cli_names_the_broken_link_and_exports_rows_with_their_hashes(decided, database_url):
    db, ids = decided
    env = {"HITL_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "HITL_AUTO_MIGRATE": "false"}
    ok = subprocess.run([sys.executable, "-m", "services.cli.main", "audit", "verify"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "9 history rows" in ok.stdout, ok.stdout + ok.stderr
    exported = subprocess.run([sys.executable, "-m", "services.cli.main", "audit", "export", "--since", "0"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len([r for r in records if r["record"] == "history"]) == 9 and all(r["hash"] for r in records)
    with db.write() as conn:
        conn.execute(text("UPDATE checkpoint_history SET code = 'forged' WHERE id = (SELECT MIN(id) FROM "
                          "checkpoint_history)"))
    bad = subprocess.run([sys.executable, "-m", "services.cli.main", "audit", "verify"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "edited" in bad.stdout


def test_retention_prunes_old_checkpoints_and_the_log_still_verifies(decided):
    import time

    from shared.store import retention

    db, ids = decided
    with db.write() as conn:
        conn.execute(update(checkpoints).where(checkpoints.c.id == ids[0]).values(resolved_at=1.0))
        done = retention.prune(conn, before=time.time() - 3600, now=time.time())
    assert (done.checkpoints, done.history_rows) == (1, 3)
    broken, counts = check(db)
    assert broken is None and counts["checkpoints"] == 2
    with db.read() as conn:
        assert store.get(conn, ids[0]) is None and store.get(conn, ids[1]) is not None
