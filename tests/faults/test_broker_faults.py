"""RabbitMQ goes away in the middle of load: connection cuts (a TCP proxy between the processes and
the broker, closed and reopened) and a broker restart (`rabbitmqctl stop_app` / `start_app`).

The processes must reconnect by themselves (no restart of ours) and nothing may be lost: every
simulated Dify call ends with one answer that agrees with the store.

The restart uses a private RabbitMQ node started for this module (same installation, its own port
and data directory), so the machine's shared broker — and whoever else is testing on it — is never
stopped. Set FAULTS_SHARED_BROKER_RESTART=1 to restart the shared node instead (restored in a finally).
"""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from urllib.parse import urlparse

import pytest

from tests.faults.conftest import scaled
from tests.faults.helpers import (
    DifyNode,
    Reviewer,
    StoreView,
    account,
    checkpoint_body,
    finish,
    open_broker,
    ready,
    replay_all,
    start_call,
)
from tests.faults.netfaults import PrivateRabbit, TcpProxy

TARGETS = ("ingest", "decider", "poller")
pytestmark = pytest.mark.timeout(900)


class SharedRabbit:
    def __init__(self, url: str) -> None:
        self.url = url

    def stop_app(self) -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], capture_output=True, timeout=60)

    def start_app(self) -> None:
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
        subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=120)

    def stop(self) -> None:
        self.start_app()


@pytest.fixture(scope="module")
def rabbit(rabbitmq_url):
    if os.environ.get("FAULTS_SHARED_BROKER_RESTART") == "1":
        node = SharedRabbit(rabbitmq_url)
        try:
            yield node
        finally:
            node.start_app()
        return
    node = PrivateRabbit()
    try:
        node.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        node.stop()
        pytest.skip(f"cannot start a private RabbitMQ node ({exc}); FAULTS_SHARED_BROKER_RESTART=1 uses the shared one")
    try:
        yield node
    finally:
        node.stop()


async def all_ready(stack, timeout_s: float = 90) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if all(await asyncio.gather(*(asyncio.to_thread(ready, stack, k) for k in TARGETS))):
            return time.monotonic() - t0
        await asyncio.sleep(0.25)
    return None


def test_connection_cuts_and_a_broker_restart_under_load_lose_nothing(rabbit, stacks, row):  # rabbit outlives the stack
    target = urlparse(rabbit.url)
    proxy = TcpProxy(target.hostname, target.port)
    proxied = rabbit.url.replace(f":{target.port}/", f":{proxy.port}/")
    stack = stacks("broker", rabbitmq_url=proxied, processes=("sim", "decider", "poller", "ingest"))
    store = StoreView(stack.db_url)
    cuts, restarts = scaled(8, minimum=1), scaled(3, minimum=1)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=150, interval_s=0.3)
        bot = await open_broker(stack, rabbit.url)  # straight to the node: the bot has its own link
        reviewer = Reviewer(stack, store, bot)
        stop, done = asyncio.Event(), asyncio.Event()
        results: list = []
        recoveries: list = []
        sem = asyncio.Semaphore(40)
        reviewing = asyncio.create_task(reviewer.run(done))

        calls: list = []

        async def load():
            deadline = time.monotonic() + 400
            while not stop.is_set() and time.monotonic() < deadline:
                calls.append(start_call(node, checkpoint_body(), results, sem))
                await asyncio.sleep(0.1)

        async def faults():
            try:
                for _ in range(cuts):
                    await asyncio.sleep(random.uniform(1.0, 3.0))
                    dropped = await asyncio.to_thread(proxy.cut)
                    await asyncio.sleep(random.uniform(1.0, 4.0))
                    proxy.reopen()
                    recoveries.append(("cut", dropped, await all_ready(stack)))
                    print(f"[broker] cut {recoveries[-1]} results={len(results)}", flush=True)
                for _ in range(restarts):
                    await asyncio.sleep(random.uniform(1.0, 3.0))
                    try:
                        await asyncio.to_thread(rabbit.stop_app)
                        await asyncio.sleep(random.uniform(1.0, 3.0))
                    finally:
                        await asyncio.to_thread(rabbit.start_app)
                    recoveries.append(("restart", None, await all_ready(stack)))
                    print(f"[broker] restart {recoveries[-1]} results={len(results)}", flush=True)
                await asyncio.sleep(2)
            finally:
                stop.set()

        loading = asyncio.create_task(load())
        await faults()
        await loading
        print(f"[broker] faults done, waiting for {len(results)} calls", flush=True)
        unfinished = await finish(calls, 120)
        done.set()
        await reviewing
        tally = account(results, store)
        if unfinished:
            tally.problems.insert(0, f"{unfinished} calls still unanswered 120 s after the last fault")
            for p in tally.problems[1:4]:
                run_id = p.split(":")[0]
                cp = next((c for c in store.checkpoints({run_id})), None)
                if cp:
                    tally.problems.append(f"history of {cp['id']}: {store.history(cp['id'])}")
        await replay_all(node, results, tally)
        # the processes reconnected by themselves: each broker shows more than one connection made
        await node.aclose()
        await reviewer.aclose()
        await bot.close()
        return tally, recoveries, dict(reviewer.statuses)

    try:
        tally, recoveries, decisions = asyncio.run(scenario())
    finally:
        proxy.close()
        stack.env["HITL_RABBITMQ_URL"] = rabbit.url  # the cleanup of queues goes straight to the node
    not_back = [r for r in recoveries if r[2] is None]
    pids_same = all(stack.procs[k].poll() is None for k in TARGETS)
    row("RabbitMQ cuts + restart", **tally.counts(), seconds=time.monotonic() - started, cuts=cuts, restarts=restarts,
        worst_recovery_s=max((r[2] or 999) for r in recoveries))
    print(f"\nbroker: recoveries {recoveries}, decisions {decisions}, problems:\n  " + "\n  ".join(tally.problems[:12]))
    assert pids_same, "a process died instead of reconnecting"
    assert not not_back, f"not ready again after a fault: {not_back}"
    assert tally.lost == 0 and tally.duplicated == 0, tally.problems[:20]
    assert tally.errors == 0, tally.problems[:20]
    store.close()
