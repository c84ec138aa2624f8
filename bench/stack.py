"""The system under test: the real processes (demo.stack.ProcessStack) on a namespace of their own,
a fresh SQLite file or a fresh PostgreSQL database per stack, and the store queries that check the
books after a run (two checkpoints for one call, two applied decisions for one checkpoint)."""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import text

from demo.stack import APP_TOKEN, DIFY_APP_KEY, REVIEWERS, ProcessStack
from shared.store import Database

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# The bench's own tools publish as our processes do (signed with the internal key) and decide as a
# configured bot acting for a reviewer of its own.
BENCH_KEY = "bench-internal-signing-key-0123456789abcdef"
BENCH_BOT, BENCH_BOT_SECRET, BENCH_REVIEWER = "bench", "bench-bot-secret-0123456789", "bench-reviewer"
BENCH_ENV = {
    "HITL_INTERNAL_KEY": BENCH_KEY,
    "HITL_BOTS": json.dumps([{"name": BENCH_BOT, "secret": BENCH_BOT_SECRET, "acts_for": [BENCH_REVIEWER],
                              "apps": ["demo"]}]),
    "HITL_REVIEWERS": json.dumps(REVIEWERS + [{"name": BENCH_REVIEWER, "token": "rv-bench-token", "apps": ["demo"]}]),
}
PG_BASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_postgres_db(base_url: str = PG_BASE_URL) -> tuple[str, callable]:
    from demo.stack import fresh_postgres_db as fresh

    return fresh(base_url, "hitl_bench")


async def delete_namespace(namespace: str) -> None:
    """Remove a stack's exchanges and queues (ProcessStack.delete_broker_objects, on this event loop)."""
    from shared.broker import Broker
    from shared.topology import Names, build_topology

    broker = Broker(RABBITMQ_URL, name="bench-cleanup",  # the notifier's queues too (the notify scenario's)
                    topology=build_topology(Names(namespace), with_notifier=True))
    await broker.start(wait_s=10)
    try:
        await broker.delete_topology()
    finally:
        await broker.close()


def database_for(kind: str, workdir: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'hitl.db'}", lambda: None
    if kind == "postgresql":
        return fresh_postgres_db()
    raise ValueError(f"unknown database kind {kind!r}")


class BenchStack:
    """ingest ×I, decider ×D (and a poller, as in production) on a fresh store and namespace.

    The checkpoint app has no Dify connection here, so the poller consumes the checkpoint events
    (as it would in production) without polling a Dify for them; scenario 4 builds its own stack."""

    def __init__(self, db_kind: str, *, ingest: int = 1, decider: int = 1, poller: bool = True, sim: bool = False,
                 env: dict[str, str] | None = None, watched: bool = False, keep_dir: bool = False) -> None:
        self.db_kind = db_kind
        self.counts = {"ingest": ingest, "decider": decider}
        self.with_poller, self.with_sim = poller, sim
        self.tmp = tempfile.TemporaryDirectory(prefix="hitl-bench-")
        self.workdir = Path(self.tmp.name)
        self.keep_dir = keep_dir
        self.database_url, self._drop = database_for(db_kind, self.workdir)
        self.namespace = f"b{uuid.uuid4().hex[:10]}"
        from bench.scenarios import SERVICE_ENV

        extra = {**BENCH_ENV, **SERVICE_ENV, **(env or {})}
        if not watched:
            extra.setdefault("HITL_APPS", json.dumps([{"name": "demo", "checkpoint_token": APP_TOKEN}]))
        extra.setdefault("HITL_LOG_LEVEL", "INFO")
        self.ps = ProcessStack(self.workdir, database_url=self.database_url, rabbitmq_url=RABBITMQ_URL,
                               namespace=self.namespace, env=extra)
        self.ingest_keys: list[str] = []
        self.decider_keys: list[str] = []

    def start(self) -> BenchStack:
        # decider first (with the simulator beside it): it migrates the store; the rest, started together,
        # find it current
        first = ["decider"] + (["sim"] if self.with_sim else [])
        self.decider_keys = self.ps.start_many(first)[:1]
        for i in range(2, self.counts["decider"] + 1):
            self.decider_keys.append(self.ps.spawn("decider", replica=i))
        self.ingest_keys = [self.ps.spawn("ingest")]
        for i in range(2, self.counts["ingest"] + 1):
            self.ingest_keys.append(self.ps.spawn("ingest", replica=i))
        rest = self.decider_keys[1:] + self.ingest_keys + ([self.ps.spawn("poller")] if self.with_poller else [])
        for key in rest:
            self.ps.wait_ready(key)
        return self

    @property
    def ingest_urls(self) -> list[str]:
        return [self.ps.url(k) for k in self.ingest_keys]

    def pid(self, key: str) -> int:
        return self.ps.procs[key].pid

    def pids(self) -> dict[str, int]:
        return {k: p.pid for k, p in self.ps.procs.items() if p.poll() is None}

    async def stop(self) -> None:
        try:
            self.ps.stop_all()
        finally:
            try:
                await delete_namespace(self.namespace)
            except Exception:
                pass
            self._drop()
            if not self.keep_dir:
                self.tmp.cleanup()

    async def __aenter__(self) -> BenchStack:
        try:
            return self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ the books
    def store_audit(self, run_prefix: str) -> dict[str, int]:
        """What the store says about this run's calls: checkpoints, resolutions, and duplicates."""
        db = Database(self.database_url)
        like = run_prefix + "%"
        try:
            with db.read() as conn:
                q = lambda sql: conn.execute(text(sql), {"p": like}).scalar_one()  # noqa: E731
                return {
                    "checkpoints": q("SELECT count(*) FROM checkpoints WHERE workflow_run_id LIKE :p"),
                    "resolved": q("SELECT count(*) FROM checkpoints WHERE workflow_run_id LIKE :p "
                                  "AND status = 'resolved'"),
                    "open": q("SELECT count(*) FROM checkpoints WHERE workflow_run_id LIKE :p AND status = 'open'"),
                    "runs_with_two_checkpoints": q(
                        "SELECT count(*) FROM (SELECT workflow_run_id FROM checkpoints WHERE workflow_run_id LIKE :p "
                        "GROUP BY workflow_run_id HAVING count(*) > 1) t"),
                    "checkpoints_with_two_applied_decisions": q(
                        "SELECT count(*) FROM (SELECT h.checkpoint_id FROM checkpoint_history h JOIN checkpoints c "
                        "ON c.id = h.checkpoint_id WHERE c.workflow_run_id LIKE :p AND h.kind = 'decision' "
                        "AND h.outcome = 'applied' GROUP BY h.checkpoint_id HAVING count(*) > 1) t"),
                }
        finally:
            db.dispose()


__all__ = ["APP_TOKEN", "DIFY_APP_KEY", "BenchStack", "RABBITMQ_URL", "database_for", "fresh_postgres_db"]
