"""Fault suite plumbing: the FAULTS_SCALE knob, one stack per scenario module (real processes,
RabbitMQ, a fresh PostgreSQL database or a SQLite file), and the session-wide results table printed
at the end (pytest_terminal_summary) and written to var/faults/latest.json."""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from demo.stack import ROOT, ProcessStack
from shared.store.urls import normalise_database_url

RESULTS: list[dict] = []
COLUMNS = ("scenario", "iterations", "opened", "delivered", "lost", "duplicated", "leaked", "errors", "seconds",
           "result")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def faults_report():
    return RESULTS


def record(scenario: str, *, iterations: int, opened: int = 0, delivered: int = 0, lost: int = 0,
           duplicated: int = 0, leaked: int = 0, errors: int = 0, seconds: float = 0.0, result: str | None = None,
           **extra) -> dict:
    """One row of the table. `result` is filled in at the end from the test's outcome unless given.
    `leaked`: one app's data seen by, or changed by, another app's token or a forged message."""
    row = {"scenario": scenario, "iterations": iterations, "opened": opened, "delivered": delivered, "lost": lost,
           "duplicated": duplicated, "leaked": leaked, "errors": errors, "seconds": round(seconds, 1), "result": result,
           **extra}
    RESULTS.append(row)
    return row


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" or (rep.when == "setup" and rep.failed):
        verdict = "xfail" if hasattr(rep, "wasxfail") else rep.outcome
        for row in RESULTS:
            if row.get("nodeid") == item.nodeid and row["result"] is None:
                row["result"] = verdict


@pytest.fixture
def row(request):
    """`row("name", iterations=…)` records a table row tied to this test's outcome."""
    def make(scenario: str, **counts) -> dict:
        return record(scenario, nodeid=request.node.nodeid, **counts)
    return make


def _table(rows: list[dict]) -> str:
    cells = [[str(r.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(COLUMNS)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    out = [line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    for r in RESULTS:
        r["result"] = r["result"] or "?"
    terminalreporter.section(f"fault suite (FAULTS_SCALE={scale_factor()})")
    terminalreporter.write_line(_table(RESULTS))
    out = ROOT / "var" / "faults"
    out.mkdir(parents=True, exist_ok=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "latest.json").write_text(json.dumps({"scale": scale_factor(), "at": at, "columns": list(COLUMNS),
                                                 "rows": RESULTS}, indent=2, default=str))
    terminalreporter.write_line(f"written to {out / 'latest.json'}")


def scale_factor() -> float:
    try:
        return max(0.01, float(os.environ.get("FAULTS_SCALE", "1.0")))
    except ValueError:
        return 1.0


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, int(round(n * scale_factor())))


# ---------------------------------------------------------------------- stacks
def fresh_database(tmp: Path) -> tuple[str, callable]:
    """A fresh PostgreSQL database when DATABASE_URL is set (several processes write at once), else SQLite."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp / 'hitl.db'}", lambda: None
    from tests.conftest import _fresh_postgres_db

    return _fresh_postgres_db(base)


class StackFactory:
    def __init__(self, tmp_root: Path, rabbitmq_url: str) -> None:
        self.tmp_root = tmp_root
        self.rabbitmq_url = rabbitmq_url
        self.cleanups: list = []

    def __call__(self, name: str, *, env: dict | None = None, rabbitmq_url: str | None = None,
                 database_url: str | None = None, processes=("sim", "decider", "poller", "ingest")) -> ProcessStack:
        """`rabbitmq_url`, `database_url`: a private broker or store of the scenario (a node list, a
        multi-host URL) instead of the machine's; the scenario owns and removes those."""
        workdir = self.tmp_root / f"{name}-{uuid.uuid4().hex[:6]}"
        workdir.mkdir(parents=True)
        db_url, drop = (database_url, lambda: None) if database_url else fresh_database(workdir)
        base_env = {"HITL_HOLD_MARGIN_S": "1", "HITL_DECISION_REPLY_TIMEOUT_S": "3", "HITL_LOG_LEVEL": "INFO",
                    "HITL_REPUBLISH_AFTER_S": "1", "HITL_DISCOVERY_INTERVAL_S": "2", "HITL_POLL_MAX_INTERVAL_S": "3"}
        stack = ProcessStack(workdir, database_url=db_url, rabbitmq_url=rabbitmq_url or self.rabbitmq_url,
                             env={**base_env, **(env or {})})
        stack.db_url = normalise_database_url(db_url)  # for the test's own witness (StoreView)
        self.cleanups.append((stack, drop))
        stack.start_many(processes)
        return stack

    def close(self) -> None:
        for stack, drop in reversed(self.cleanups):
            try:
                stack.stop_all()
            finally:
                try:
                    stack.delete_broker_objects()
                except Exception:
                    pass
                try:
                    drop()
                except Exception:
                    pass


SESSION_DIR = Path(os.environ.get("FAULTS_WORKDIR", "/tmp/hitl-faults")) / time.strftime("%Y%m%d-%H%M%S")


@pytest.fixture(scope="module")
def stacks(request, rabbitmq_url):
    """Process logs stay in FAULTS_WORKDIR (default /tmp/hitl-faults/<session>/<module>-…), outside
    pytest's rotating tmp dirs, so a failure can be read after the run."""
    root = SESSION_DIR / request.module.__name__.rsplit(".", 1)[-1]
    root.mkdir(parents=True, exist_ok=True)
    factory = StackFactory(root, rabbitmq_url)
    yield factory
    factory.close()
