"""The store's own counters (shared/store/counting.py), which `make bench` divides by cycles: every
statement SQLAlchemy executes, every transaction's end, and the round trips they cost."""
from __future__ import annotations

from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from shared.store import Database, counting


def _counts() -> tuple[float, float, float, float]:
    value = lambda name, **labels: REGISTRY.get_sample_value(name, labels) or 0.0  # noqa: E731
    return (value("hitl_store_statements_total"), value("hitl_store_round_trips_total"),
            value("hitl_store_transactions_total", outcome="commit"),
            value("hitl_store_transactions_total", outcome="rollback"))


def _rose(before: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(a - b for a, b in zip(_counts(), before, strict=True))


def test_two_statements_in_one_transaction_count_two_statements_one_commit_three_round_trips():
    counting.install()  # importing shared.store installed it; a second call must not count twice
    engine = create_engine("sqlite://")
    try:
        before = _counts()
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        # statements, round trips (the two statements and the COMMIT: SQLite's driver sends no BEGIN
        # of its own through SQLAlchemy), commits, rollbacks
        assert _rose(before) == (2, 3, 1, 0)
    finally:
        engine.dispose()


def test_a_store_write_counts_its_begin_immediate_and_a_read_ends_in_a_rollback(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'hitl.db'}")
    try:
        before = _counts()
        with db.write() as conn:  # BEGIN IMMEDIATE is a statement db.py issues itself
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert _rose(before) == (3, 4, 1, 0)
        before = _counts()
        with db.read() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar_one() == 1
        assert _rose(before) == (2, 3, 0, 1)
    finally:
        db.dispose()
