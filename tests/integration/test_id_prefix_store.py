"""`checkpoints.by_id_prefix` (what `hitl show 3f2a9c` resolves through) on SQLite and on PostgreSQL: true
prefixes only — whatever the column's collation makes of `-` and `_` — within the apps asked for."""
from __future__ import annotations

import time

import pytest

from shared.store import Database
from shared.store import checkpoints as store

pytestmark = pytest.mark.integration

IDS = ["abc-1", "abc_2", "abcd3", "ab-c9", "ab_c8", "abd00", "ABC-4", "abc%5"]


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    now = time.time()
    with database.write() as conn:
        for i, cid in enumerate(IDS):
            store.insert_if_absent(conn, dict(
                id=cid, app="demo" if i % 4 else "other", kind="http", workflow_run_id=f"run-{i}", node_id="draft",
                round=1, status="open", mode="hold", node_output="x", timeout_s=300, deadline=now + 300,
                on_timeout="abort", assignees=[], max_rounds=5, created_at=now, updated_at=now))
    yield database
    database.dispose()


@pytest.mark.parametrize("prefix, expected", [
    ("abc", ["abc%5", "abc-1", "abc_2", "abcd3"]),
    ("abc-", ["abc-1"]),
    ("abc_", ["abc_2"]),
    ("abc%", ["abc%5"]),
    ("ab-", ["ab-c9"]),
    ("ab", ["ab-c9", "ab_c8", "abc%5", "abc-1", "abc_2", "abcd3", "abd00"]),
    ("abz", []),
])
def test_only_true_prefixes_match_on_every_store(db, prefix, expected):
    with db.read() as conn:
        rows, total = store.by_id_prefix(conn, prefix, limit=50)
    assert sorted(r["id"] for r in rows) == sorted(expected) and total == len(expected)


def test_a_prefix_is_looked_up_within_the_apps_given(db):
    with db.read() as conn:
        rows, total = store.by_id_prefix(conn, "abc", apps={"demo"}, limit=50)
        none, zero = store.by_id_prefix(conn, "abc", apps=frozenset(), limit=50)
    assert sorted(r["id"] for r in rows) == ["abc%5", "abc_2", "abcd3"] and total == 3  # abc-1 is app "other"
    assert none == [] and zero == 0


def test_the_page_is_bounded_and_the_total_is_exact(db):
    with db.read() as conn:
        rows, total = store.by_id_prefix(conn, "ab", limit=2)
    assert len(rows) == 2 and total == 7
