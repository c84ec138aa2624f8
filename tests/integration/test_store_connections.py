"""PostgreSQL drops every connection (a restart, a failover): reads go on, a write fails once and the
retry works. Writers skip the pre-ping round trip (shared/store/db.py) because they retry anyway."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.store import Database
from shared.store import checkpoints as store
from shared.store.errors import StoreUnavailable
from tests.conftest import _fresh_postgres_db

pytestmark = pytest.mark.integration


def drop_all_connections(db: Database) -> None:
    with db.read() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    db.engine.dispose()  # the reader's own connection too, as a restart would


def test_after_postgresql_drops_connections_reads_work_and_a_write_fails_once(postgres_base_url):
    url, drop = _fresh_postgres_db(postgres_base_url)
    db = Database(url)
    try:
        db.migrate()
        for i in range(3):  # fill both pools
            with db.write() as conn:
                store.append_history(conn, f"cp-{i}", "opened")
        drop_all_connections(db)
        with db.read() as conn:  # pre-pinged: no error
            assert len(store.history_of(conn, "cp-0")) == 1
        with pytest.raises(StoreUnavailable):
            with db.write() as conn:
                store.append_history(conn, "cp-x", "opened")
        with db.write() as conn:  # the failure invalidated the pool: the retry gets a fresh connection
            store.append_history(conn, "cp-x", "opened")
        with db.read() as conn:
            assert [h["kind"] for h in store.history_of(conn, "cp-x")] == ["opened"]
    finally:
        db.dispose()
        drop()
