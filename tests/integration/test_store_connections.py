"""PostgreSQL drops every connection (a restart, a failover): reads go on, a write fails once and the
retry works. Writers skip the pre-ping round trip (shared/store/db.py) because they retry anyway.
A libpq multi-host URL whose first host is down reaches the next one."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from demo.stack import free_port
from shared.settings import Settings
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
        with pytest.raises(StoreUnavailable) as lost:
            with db.write() as conn:
                store.append_history(conn, "cp-x", "opened")
        assert lost.value.connection_lost  # so a handler's transaction is run again at once
        with db.write() as conn:  # the failure invalidated the pool: the retry gets a fresh connection
            store.append_history(conn, "cp-x", "opened")
        with db.read() as conn:
            assert [h["kind"] for h in store.history_of(conn, "cp-x")] == ["opened"]
    finally:
        db.dispose()
        drop()


def multi_host(url: str, *ports: int) -> str:
    """`url` (one host) as libpq's multi-host form on 127.0.0.1 with `ports`."""
    rest = url.split("://", 1)[1]
    userinfo, _, hostpath = rest.rpartition("@")
    path = hostpath.partition("/")[2]
    return f"postgresql://{userinfo}@" + ",".join(f"127.0.0.1:{p}" for p in ports) + f"/{path}"


def test_a_multi_host_url_whose_first_host_is_down_uses_the_next_one(postgres_base_url):
    url, drop = _fresh_postgres_db(postgres_base_url)
    real = int(url.rpartition("@")[2].split("/")[0].rpartition(":")[2] or 5432)
    dead = free_port()
    settings = Settings(database_url=multi_host(url, dead, real))
    assert "target_session_attrs=read-write" in settings.database_url
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.write() as conn:
            store.append_history(conn, "cp-multi", "opened")
        with db.read() as conn:
            assert [h["kind"] for h in store.history_of(conn, "cp-multi")] == ["opened"]
            assert conn.execute(text("SELECT inet_server_port()")).scalar_one() == real
        assert db.where.endswith(f"127.0.0.1:{dead},127.0.0.1:{real}")
    finally:
        db.dispose()
        drop()


def test_a_multi_host_url_with_no_host_up_is_a_store_unavailable_not_a_crash():
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/nothing")
    try:
        assert db.ready() is False
        with pytest.raises(StoreUnavailable):
            with db.write() as conn:
                conn.execute(text("SELECT 1"))
    finally:
        db.dispose()
