"""Graceful shutdown. SIGTERM on ingest answers every held call 503 at once (so Dify's retry goes
to another replica or the restarted one) and the process exits; SIGTERM on the decider and the
poller under load finishes or returns in-flight work: nothing is lost after the restart."""
from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from tests.e2e.harness import E2E, set_checkpoint_body
from tests.e2e.test_long_waits_and_restarts import fast_retries
from tests.faults.conftest import scaled
from tests.faults.helpers import (
    DifyNode,
    Reviewer,
    StoreView,
    account,
    checkpoint_body,
    finish,
    open_broker,
    start_call,
    wait_until,
)

pytestmark = pytest.mark.timeout(600)
CUT = ("RemoteProtocolError", "ReadError")  # a held call dropped without an answer


def sigterm(stack, key: str) -> tuple[int | None, float]:
    proc = stack.procs[key]
    t0 = time.monotonic()
    stack.kill(key, signal.SIGTERM)
    return proc.returncode, time.monotonic() - t0


def test_sigterm_on_ingest_answers_held_calls_503_and_drains(stacks, row):
    stack = stacks("shutdown-ingest", processes=("sim", "decider", "ingest"), env={"HITL_HOLD_MARGIN_S": "1"})
    store = StoreView(stack.db_url)
    n, rounds = scaled(40, minimum=5), scaled(3, minimum=1)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=200, interval_s=0.3)
        broker = await open_broker(stack)
        results, sem, calls, exits = [], asyncio.Semaphore(200), [], []
        answered_503, cut = 0, 0
        for _ in range(rounds):
            bodies = [checkpoint_body(read_timeout_s=60) for _ in range(n)]  # held up to 59 s
            calls += [start_call(node, b, results, sem) for b in bodies]
            runs = {b["workflow_run_id"] for b in bodies}
            assert await wait_until(lambda runs=runs: len(store.checkpoints(runs)) >= n, 60)
            await asyncio.sleep(0.5)
            mine = [r for r in results if r.run_id in runs]
            before = [(r.statuses[503], sum(r.statuses[c] for c in CUT)) for r in mine]
            exits.append(await asyncio.to_thread(sigterm, stack, "ingest"))
            await asyncio.sleep(0.3)
            answered_503 += sum(1 for r, (b503, _) in zip(mine, before, strict=True) if r.statuses[503] > b503)
            cut += sum(sum(r.statuses[c] for c in CUT) - bc for r, (_, bc) in zip(mine, before, strict=True))
            await asyncio.to_thread(stack.start, "ingest")
        reviewer = Reviewer(stack, store, broker)
        done = asyncio.Event()
        reviewing = asyncio.create_task(reviewer.run(done))
        unfinished = await finish(calls, 120)
        done.set()
        await reviewing
        tally = account(results, store)
        tally.errors += unfinished
        await node.aclose()
        await reviewer.aclose()
        await broker.close()
        return tally, answered_503, cut, exits

    tally, answered_503, cut, exits = asyncio.run(scenario())
    row("SIGTERM ingest (held calls)", **tally.counts(), seconds=time.monotonic() - started,
        held_answered_503=answered_503, held_cut=cut, exits=[(c, round(t, 1)) for c, t in exits])
    print(f"\nshutdown ingest: {answered_503}/{n * rounds} held calls answered 503, {cut} cut; exits {exits}")
    assert all(code == 0 and t < 15 for code, t in exits), exits
    assert answered_503 == n * rounds and cut == 0
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    store.close()


def test_sigterm_on_decider_and_poller_under_load_loses_nothing(stacks, row):
    stack = stacks("shutdown-workers", env={"HITL_DECISION_REPLY_TIMEOUT_S": "2"})
    e2e = E2E(stack)
    e2e.register(lambda g: (fast_retries(g, read_s=5, interval_ms=1000), set_checkpoint_body(g, read_timeout_s=5)))
    store = StoreView(stack.db_url)
    terms = scaled(16, minimum=2)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=100, interval_s=0.3)
        broker = await open_broker(stack)
        reviewer = Reviewer(stack, store, broker)
        done = asyncio.Event()
        reviewing = asyncio.create_task(reviewer.run(done))
        results, sem, calls, exits = [], asyncio.Semaphore(60), [], []
        sim_runs = [e2e.start_run(f"term {i}") for i in range(scaled(6, minimum=2))]

        async def load(stop):
            while not stop.is_set():
                calls.append(start_call(node, checkpoint_body(), results, sem))
                await asyncio.sleep(0.05)

        stop = asyncio.Event()
        loading = asyncio.create_task(load(stop))
        for i in range(terms):
            await asyncio.sleep(random.uniform(0.5, 1.5))
            key = ("decider", "poller")[i % 2]
            exits.append((key, *await asyncio.to_thread(sigterm, stack, key)))
            await asyncio.to_thread(stack.start, key)
        stop.set()
        await loading
        unfinished = await finish(calls, 120)
        sim = [f.result(timeout=120) for f in sim_runs]
        done.set()
        await reviewing
        tally = account(results, store)
        tally.errors += unfinished
        sim_ids = {r["data"]["id"] for r in sim}
        for r in sim:
            tally.iterations += 1
            ok = r["data"]["status"] in ("succeeded", "partial-succeeded")
            tally.delivered += ok
            tally.lost += not ok
        recorded = await wait_until(lambda: all(store.runs().get(i, {}).get("status")
                                                in ("succeeded", "partial-succeeded") for i in sim_ids), 60, 0.5)
        if not recorded:
            tally.lost += 1
            tally.problems.append(f"runs not recorded: {[store.runs().get(i) for i in sim_ids]}")
        await node.aclose()
        await reviewer.aclose()
        await broker.close()
        return tally, exits

    tally, exits = asyncio.run(scenario())
    slow = [e for e in exits if e[1] != 0 or e[2] > 15]
    row("SIGTERM decider/poller", **tally.counts(), seconds=time.monotonic() - started, sigterms=len(exits),
        worst_exit_s=round(max(e[2] for e in exits), 1))
    print(f"\nshutdown workers: exits {[(k, c, round(t, 1)) for k, c, t in exits]}; problems {tally.problems[:5]}")
    assert not slow, slow
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    store.close()
