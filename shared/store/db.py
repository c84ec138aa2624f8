"""Engine setup, migrations, and the two kinds of transaction (read, write).

SQLite: WAL, so readers (ingest, console) never wait for the writer; write transactions start with
BEGIN IMMEDIATE, because a deferred transaction that reads and then writes can fail with "database is
locked" without waiting when another writer is active. PostgreSQL: plain READ COMMITTED; every state
change is a conditional UPDATE, so concurrent deciders cannot both win.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._ensure_sqlite_dir(url)
            self.engine = self._sqlite_engine(url, immediate=False)
            self.write_engine = self._sqlite_engine(url, immediate=True)
        else:
            # Reads (HTTP answers) ping a pooled connection before use, so the first read after a
            # PostgreSQL restart does not fail. Writes skip that extra round trip per transaction: every
            # writer (decider, poller) retries a message whose transaction failed, and the failure
            # invalidates the pool, so the retry finds fresh connections.
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                                        connect_args={"connect_timeout": 5})
            self.write_engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=False,
                                              connect_args={"connect_timeout": 5})

    @staticmethod
    def _ensure_sqlite_dir(url: str) -> None:
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _sqlite_engine(url: str, immediate: bool) -> Engine:
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with self.write_engine.begin() as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with self.read() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------ migrations
    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def migrate(self) -> str:
        """Upgrade to the newest schema; returns the revision now in place."""
        cfg = self._alembic_config()
        with self.write_engine.connect() as conn:
            if not self.is_sqlite:
                # Several replicas may start together: one migrates, the others wait for it.
                conn.execute(text("SELECT pg_advisory_lock(727274)"))
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(727274)"))
                    conn.commit()
        return self.current_revision() or "none"

    def current_revision(self) -> str | None:
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
