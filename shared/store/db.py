"""Engine setup, migrations, the two kinds of transaction (read, write), store health and the clock.

SQLite: WAL, so readers (ingest, console) never wait for the writer; write transactions start with
BEGIN IMMEDIATE, because a deferred transaction that reads and then writes can fail with "database is
locked" without waiting when another writer is active. PostgreSQL: plain READ COMMITTED; every state
change is a conditional UPDATE, so concurrent deciders cannot both win.

Several PostgreSQL hosts (a primary and its standby, libpq's multi-host URL, shared/store/urls.py):
every new connection goes to the host that takes writes (`target_session_attrs=read-write`). After
a failover the pooled connections to the old primary fail once; that failure invalidates the pool,
and the work is retried (a message waits uncounted in a delay queue, an HTTP read answers 503 and
the caller retries) on fresh connections to the new primary.

Statement parameters never reach an exception's text (`hide_parameters`): a Dify form token is a
parameter of some statements, and a failed statement's message ends up in logs and DLQ headers.
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from shared import metrics
from shared.store.errors import StoreUnavailable, is_connection_lost, is_unavailable
from shared.store.revisions import declared_head, stored_revision
from shared.store.urls import describe_database_url, normalise_database_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
CLOCK_REFRESH_S = 30.0
# PostgreSQL: a statement that runs this long is a store that does not answer (a half-open link, a
# lock held by a frozen process); failing it lets the message be retried instead of hanging.
STATEMENT_TIMEOUT_MS = 15_000


class StoreHealth:
    """Whether writes work now. Reads alone cannot tell (SQLite's disk full still reads), so every write
    transaction reports how it ended; readiness and the `hitl_store_up` gauge read it."""

    def __init__(self) -> None:
        metrics.store_up.set(1)
        self.up = True
        self.since = time.time()
        self.last_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        if self.up:
            self.since = time.time()
        self.up = False
        metrics.store_up.set(0)
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"

    def worked(self) -> None:
        if not self.up:
            self.since = time.time()
            metrics.store_up.set(1)
        self.up = True
        self.last_error = None


class Database:
    def __init__(self, url: str) -> None:
        url = normalise_database_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.health = StoreHealth()
        self._clock_offset = 0.0
        self._clock_read_at = float("-inf")
        self._clock_lock = threading.Lock()
        if self.is_sqlite:
            self._ensure_sqlite_dir(url)
            self.engine = self._sqlite_engine(url, immediate=False)
            self.write_engine = self._sqlite_engine(url, immediate=True)
        else:
            # Reads (HTTP answers) ping a pooled connection before use, so the first read after a
            # PostgreSQL restart does not fail. Writes skip that extra round trip per transaction: every
            # writer (decider, poller) retries a message whose transaction failed, and the failure
            # invalidates the pool, so the retry finds fresh connections. TCP keepalives and a statement
            # timeout turn a half-open link into an error within seconds instead of a hang.
            connect_args = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                            "keepalives_count": 3, "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                                        connect_args=connect_args, hide_parameters=True)
            self.write_engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=False,
                                              connect_args=connect_args, hide_parameters=True)

    @staticmethod
    def _ensure_sqlite_dir(url: str) -> None:
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _sqlite_engine(url: str, immediate: bool) -> Engine:
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True)

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
        try:
            with self.engine.connect() as conn:
                yield conn
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(_describe(exc), connection_lost=is_connection_lost(exc)) from exc
            raise

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        try:
            with self.write_engine.begin() as conn:
                yield conn
        except Exception as exc:
            if is_unavailable(exc):
                self.health.failed(exc)
                raise StoreUnavailable(_describe(exc), connection_lost=is_connection_lost(exc)) from exc
            raise
        self.health.worked()

    @property
    def where(self) -> str:
        """The database and its host(s), without credentials, for logs."""
        return describe_database_url(self.url)

    def ping(self) -> bool:
        try:
            with self.read() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def ready(self) -> bool:
        """Reads answer and the last write did not fail for want of a store."""
        return self.ping() and self.health.up

    # ------------------------------------------------------------------ the shared clock
    def now(self) -> float:
        """Unix time by the store's clock, which every replica shares: deadlines are set and compared
        with it, so a replica whose own clock is wrong neither expires others' checkpoints early nor
        late. The offset to the local clock is read at most every CLOCK_REFRESH_S (no round trip per
        call); SQLite is a local file, so its clock is this machine's."""
        if self.is_sqlite:
            return time.time()
        if time.monotonic() - self._clock_read_at > CLOCK_REFRESH_S:
            self._refresh_clock()
        return time.time() + self._clock_offset

    @property
    def clock_offset_s(self) -> float:
        return self._clock_offset

    def _refresh_clock(self) -> None:
        with self._clock_lock:
            if time.monotonic() - self._clock_read_at <= CLOCK_REFRESH_S:
                return
            try:
                with self.read() as conn:
                    before = time.time()
                    db_now = conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
                    after = time.time()
                self._clock_offset = float(db_now) - (before + after) / 2
            except StoreUnavailable:
                pass  # keep the last offset; the store's outage is reported by its own errors
            self._clock_read_at = time.monotonic()

    # ------------------------------------------------------------------ migrations
    def _alembic_config(self) -> Any:
        from alembic.config import Config  # Alembic only where it works (shared/store/revisions.py)

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def migrate(self) -> str:
        """Upgrade to the newest schema; returns the revision now in place. Several processes may start
        together: on PostgreSQL an advisory lock, on SQLite a file lock beside the database lets one
        migrate while the others wait for it."""
        head = declared_head(MIGRATIONS / "versions")
        if head is not None and self._stored_revision() == head:
            return head  # the usual boot: another process (or an earlier boot) has migrated
        from alembic import command

        cfg = self._alembic_config()
        with self._migration_lock(), self.write_engine.connect() as conn:
            if not self.is_sqlite:
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

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        database = make_url(self.url).database if self.is_sqlite else None
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _stored_revision(self) -> str | None:
        try:
            with self.read() as conn:
                return stored_revision(conn)
        except StoreUnavailable:
            return None  # Alembic's path reports the outage as it always has

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head() or "none"

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


def _describe(exc: BaseException) -> str:
    """The first line of a driver error, without statement or parameters."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).splitlines()[0][:300] if str(orig) else ''}"
