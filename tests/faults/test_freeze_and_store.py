"""Every accepted decision is applied, whatever the decider or the store does meanwhile.

- a frozen decider (SIGSTOP) for longer than every timeout — the decision API's reply timeout, the
  hold windows, the broker's heartbeat at full scale — while calls and their node-confirmations
  arrive in both orders; SIGCONT: every decision answered 202 is applied, every held call answered;
- PostgreSQL unreachable (a TCP proxy in front of it cut; the shared server itself is never
  stopped) with decisions in flight from the API, node-confirmations and a bot: the decider waits,
  `/readyz` says not ready during the cut, and everything is applied once the link is back;
- the SQLite file's disk full (a small tmpfs filled to the last byte) with decisions in flight: the
  same, until space is freed.
Counted from both ends: the held calls (one 200 each, agreeing with the store) and the decisions
(`GET /v1/decisions/{id}` must say `applied` for every 200/202 and every bot message confirmed).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from shared.topology import Names, dlq_name
from tests.faults.attacks import drain, reason_of, retry_budget
from tests.faults.conftest import scale_factor, scaled
from tests.faults.helpers import (
    DifyNode,
    StoreView,
    account,
    checkpoint_body,
    finish,
    open_broker,
    start_call,
    wait_until,
)
from tests.faults.netfaults import TcpProxy
from tests.faults.promises import Promises, poll_ready, readiness

pytestmark = pytest.mark.timeout(900)


def on_store(stacks, name: str, url: str, processes=("decider", "ingest")):
    """A stack on the store at `url` (a SQLite file somewhere else) instead of the suite's own."""
    stack = stacks(name, processes=())
    stack.env["HITL_DATABASE_URL"] = stack.db_url = url
    for p in processes:
        stack.start(p)
    return stack


async def open_held(stack, store: StoreView, node: DifyNode, n: int):
    results: list = []
    sem = asyncio.Semaphore(200)
    bodies = [checkpoint_body() for _ in range(n)]
    calls = [start_call(node, b, results, sem) for b in bodies]
    runs = {b["workflow_run_id"] for b in bodies}
    assert await wait_until(lambda: len([c for c in store.checkpoints(runs) if c["status"] == "open"]) >= n, 90), \
        "the checkpoints did not open"
    return calls, results, [c for c in store.checkpoints(runs)]


# ---------------------------------------------------------------------- (a) a frozen decider
def test_decisions_racing_their_checkpoints_under_a_frozen_decider_are_all_applied(stacks, row):
    stack = stacks("freeze", processes=("decider", "ingest"))
    store = StoreView(stack.db_url)
    reply_timeout = float(stack.env["HITL_DECISION_REPLY_TIMEOUT_S"])
    # 75 s at full scale outlasts RabbitMQ's verdict on a silent connection (2 missed 30 s heartbeats);
    # at any scale it outlasts the reply timeout and several hold windows.
    freeze_s = max(75 * scale_factor(), 3 * reply_timeout + 1)
    n = scaled(200, minimum=20)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=600, interval_s=0.3)
        http = httpx.AsyncClient(timeout=30)
        promises = Promises(stack, http)
        results, sem = [], asyncio.Semaphore(n)
        stack.procs["decider"].send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        calls, confirmations = [], []
        try:
            for i in range(n):
                body = checkpoint_body()
                confirm = promises.node_confirmation(body["workflow_run_id"])
                if i % 2:  # the decision first, then the call it decides
                    confirmations.append(asyncio.create_task(confirm))
                    await asyncio.sleep(0.01)
                    calls.append(start_call(node, body, results, sem))
                else:
                    calls.append(start_call(node, body, results, sem))
                    await asyncio.sleep(0.01)
                    confirmations.append(asyncio.create_task(confirm))
            await asyncio.gather(*confirmations)
            await asyncio.sleep(max(0.0, freeze_s - (time.monotonic() - frozen_at)))
        finally:
            stack.procs["decider"].send_signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        unfinished = await finish(calls, 180)
        broken = await promises.broken(90)
        tally = account(results, store, expected={r.run_id: "approve" for r in results})
        tally.errors += unfinished
        tally.lost += len(broken)
        tally.problems += broken
        budget = retry_budget(tally, results, node.budget_s, thawed_at - frozen_at)
        await node.aclose()
        await http.aclose()
        return tally, promises, budget, thawed_at - frozen_at

    tally, promises, budget, frozen_s = asyncio.run(scenario())
    answers = {f"{door} {status}": k for (door, status), k in sorted(promises.answers.items(), key=str)}
    row("decider frozen (SIGSTOP) under decisions", **tally.counts(), seconds=time.monotonic() - started,
        frozen_s=round(frozen_s, 1), decisions=answers, promised=len(promises.made), **budget)
    print(f"\nfreeze: {frozen_s:.1f}s frozen, decisions {answers}, {len(promises.made)} promised, "
          f"problems {tally.problems[:10]}")
    assert len(promises.made) == n, answers  # every node-confirmation was accepted (202) while frozen
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:20]


# ---------------------------------------------------------------------- (b) PostgreSQL unreachable
def decide_during_fault(promises: Promises, broker, cps: list[dict]):
    """A third by id over HTTP, a third by node-confirmation, a third by the bot."""
    def one(k: int, cp: dict):
        if k % 3 == 0:
            return promises.by_id(cp["id"])
        if k % 3 == 1:
            return promises.node_confirmation(cp["workflow_run_id"])
        return promises.bot(broker, cp["id"])
    return asyncio.gather(*(one(k, cp) for k, cp in enumerate(cps)))


async def store_fault_scenario(stack, store: StoreView, n: int, fault_s: float, cut, restore, probe_url: str):
    names = Names(stack.env["HITL_NAMESPACE"])
    node = DifyNode(stack.ingest_url, max_retries=800, interval_s=0.3)
    http = httpx.AsyncClient(timeout=30)
    promises = Promises(stack, http)
    broker = await open_broker(stack)
    calls, results, cps = await open_held(stack, store, node, n)
    before, during = cps[: n // 4], cps[n // 4:]
    ready_log: list = []
    stop = asyncio.Event()
    probing = asyncio.create_task(poll_ready(probe_url, stop, ready_log))
    in_flight = asyncio.gather(*(promises.by_id(cp["id"]) for cp in before))  # just before the fault
    await asyncio.sleep(0.05)
    await asyncio.to_thread(cut)
    fault_at = time.monotonic()
    during_fault = decide_during_fault(promises, broker, during)
    await asyncio.sleep(max(0.0, fault_s - (time.monotonic() - fault_at)))
    ended_at = time.monotonic()
    await asyncio.to_thread(restore)
    await in_flight  # answered during the fault, or only now (a stalled link answers nothing)
    await during_fault
    await promises.resend_refused()
    back = await wait_until(lambda: any(s == 200 and t > ended_at for t, s in ready_log), 60)
    unfinished = await finish(calls, 180)
    answered_s = time.monotonic() - ended_at  # from the end of the fault to the last call's answer
    broken = await promises.broken(90)
    stop.set()
    await probing
    dead = await drain(broker, dlq_name(names.decisions_queue), quiet_s=0.5)
    dead += await drain(broker, dlq_name(names.checkpoints_queue), quiet_s=0.5)
    tally = account(results, store, expected={r.run_id: "approve" for r in results})
    tally.errors += unfinished
    tally.lost += len(broken) + len(dead)
    tally.problems += broken + [f"dead-lettered: {reason_of(d)[:120]}" for d in dead]
    budget = retry_budget(tally, results, node.budget_s, ended_at - fault_at)
    # the probe's verdict while the store was gone (after a second for the first failure to show)
    ready = readiness(ready_log, fault_at + 1.0, ended_at)
    await node.aclose()
    await http.aclose()
    await broker.close()
    return tally, promises, budget, ready, bool(back), ended_at - fault_at, answered_s


def report_store_fault(row, name: str, result, started: float) -> None:
    tally, promises, budget, ready, back, fault_s, answered_s = result
    answers = {f"{door} {status}": k for (door, status), k in sorted(promises.answers.items(), key=str)}
    row(name, **tally.counts(), seconds=time.monotonic() - started, fault_s=round(fault_s, 1), decisions=answers,
        promised=len(promises.made), decider_readyz_during=ready, all_answered_after_s=round(answered_s, 1),
        **budget)
    print(f"\n{name}: {fault_s:.1f}s, decisions {answers}, readyz during {ready}, back {back}, all answered "
          f"{answered_s:.1f}s after, problems {tally.problems[:10]}")
    assert ready["not_ready"] > 0 and ready["ready"] == 0, f"the decider said ready while its store was gone: {ready}"
    assert back, "the decider never said ready again"
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:20]


class StallingProxy(TcpProxy):
    """A TcpProxy that can also go silent: connections stay open and new ones are accepted, but no
    byte passes until `flow()` — a half-open link, a frozen load balancer. Nothing errors: only
    timeouts (the store's connect timeout, the readiness probe's) can tell."""

    def __init__(self, *args, **kwargs) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        super().__init__(*args, **kwargs)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r, client_w) -> None:
        await self.flowing.wait()
        await super()._handle(client_r, client_w)

    def stall(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def flow(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.set)


@pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="needs a PostgreSQL server (DATABASE_URL)")
@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_decisions_in_flight_while_postgresql_is_unreachable_are_applied_when_it_is_back(stacks, row, fault):
    """`cut`: every connection reset, new ones refused, 60 s at full scale. `stall`: a half-open link,
    40 s at full scale (the issue's two PostgreSQL outages)."""
    stack = stacks(f"pg-{fault}", processes=())
    direct = make_url(stack.db_url)
    proxy = StallingProxy(direct.host or "127.0.0.1", direct.port or 5432)
    try:
        stack.env["HITL_DATABASE_URL"] = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        for p in ("decider", "ingest"):
            stack.start(p)
        store = StoreView(stack.db_url)  # the witness reads the server directly, not through the proxy
        started = time.monotonic()
        fault_s = max((60 if fault == "cut" else 40) * scale_factor(), 8)
        begin, end = (proxy.cut, proxy.reopen) if fault == "cut" else (proxy.stall, proxy.flow)
        result = asyncio.run(store_fault_scenario(stack, store, scaled(120, minimum=12), fault_s, begin, end,
                                                  stack.decider_url))
        store.close()
    finally:
        stack.stop_all()
        proxy.flow()
        proxy.close()
    report_store_fault(row, f"PostgreSQL {'unreachable (proxy cut)' if fault == 'cut' else 'half-open (stalled)'}",
                       result, started)


# ---------------------------------------------------------------------- (c) SQLite's disk full
@contextlib.contextmanager
def small_disk(path: Path, size: str = "24m"):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a small filesystem for the SQLite file: `mount -t tmpfs` said "
                    f"{(done.stderr or done.stdout).strip()!r} (needs root or CAP_SYS_ADMIN); the store has no URL "
                    "option for SQLite's max_page_count, so there is no other honest way to fill its disk")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Filler:
    """Takes every free byte of the SQLite file's filesystem, then gives it back. The write-ahead log
    is emptied first (a TRUNCATE checkpoint): a WAL file keeps its size and is reused from its start,
    so without it the next commits would fit in space taken before the disk filled up."""

    def __init__(self, directory: Path, database: Path) -> None:
        self.path = directory / "filler"
        self.database = database

    def fill(self) -> None:
        for _ in range(50):
            with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as conn:
                busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.1)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for chunk in (1 << 20, 1 << 12, 1):  # unbuffered: every byte that fits is written
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.path.unlink(missing_ok=True)


def test_decisions_in_flight_while_sqlites_disk_is_full_are_applied_when_space_is_back(stacks, row):
    root = Path(os.environ.get("FAULTS_WORKDIR", "/tmp/hitl-faults")) / f"small-disk-{os.getpid()}"
    with small_disk(root) as disk:
        filler = Filler(disk, disk / "hitl.db")
        db = f"sqlite:///{disk / 'hitl.db'}"
        stack = on_store(stacks, "disk-full", db)
        try:
            store = StoreView(db)
            started = time.monotonic()
            result = asyncio.run(store_fault_scenario(stack, store, scaled(100, minimum=12),
                                                      max(90 * scale_factor(), 8), filler.fill, filler.free,
                                                      stack.decider_url))
            store.close()
        finally:
            filler.free()
            stack.stop_all()
        report_store_fault(row, "SQLite disk full", result, started)
