"""Steady load for the cluster and failover scenarios: simulated Dify node calls started at a fixed
pace, a reviewer deciding what opens, and the times that say how long the system took to recover.

Recovery after a fault = from the fault until the first call *begun after it* had its one 200 answer:
the time until new work flows end to end again (publish, open, decide, resolve, answer), which a
process's readiness alone does not show (a process may stay connected to a node that survived while
the queue it consumes has no leader)."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.helpers import (
    CallResult,
    DifyNode,
    Reviewer,
    StoreView,
    Tally,
    account,
    checkpoint_body,
    finish,
    replay_all,
)


@dataclass
class Fault:
    label: str
    at: float  # time.monotonic() when it happened (or, for a recovery measured from a repair, when that began)
    statuses: Counter = field(default_factory=Counter)  # answers calls got while it lasted


class Load:
    def __init__(self, stack, store: StoreView, bot=None, *, pace_s: float = 0.1, concurrency: int = 40,
                 max_retries: int = 250, interval_s: float = 0.3) -> None:
        self.stack = stack
        self.store = store
        self.node = DifyNode(stack.ingest_url, max_retries=max_retries, interval_s=interval_s)
        self.reviewer = Reviewer(stack, store, bot)
        self.pace_s = pace_s
        self.sem = asyncio.Semaphore(concurrency)
        self.results: list[CallResult] = []
        self.begun: dict[int, float] = {}  # id(result) → when the call began
        self.answered: dict[int, float] = {}  # id(result) → when it got its 200
        self.tasks: list[asyncio.Task] = []
        self.faults: list[Fault] = []
        self._stop = asyncio.Event()  # no new calls
        self._done = asyncio.Event()  # the reviewer stops too (once every call has ended)
        self._reviewing: asyncio.Task | None = None
        self._loading: asyncio.Task | None = None

    def start(self) -> None:
        self._reviewing = asyncio.create_task(self.reviewer.run(self._done))
        self._loading = asyncio.create_task(self._load())

    async def _load(self) -> None:
        while not self._stop.is_set():
            self._call(checkpoint_body())
            await asyncio.sleep(self.pace_s)

    def _call(self, body: dict) -> None:
        res = CallResult(body["workflow_run_id"], body)
        self.results.append(res)
        self.begun[id(res)] = time.monotonic()

        async def run() -> None:
            async with self.sem:
                await self.node.call(body, res=res)
            if res.answer is not None:
                self.answered[id(res)] = time.monotonic()
        self.tasks.append(asyncio.create_task(run()))

    def mark(self, label: str) -> Fault:
        fault = Fault(label, time.monotonic(), Counter(self.statuses()))
        self.faults.append(fault)
        return fault

    def statuses(self) -> Counter:
        total: Counter = Counter()
        for res in self.results:
            total.update(res.statuses)
        return total

    def since(self, fault: Fault) -> Counter:
        """Answers calls got since `fault` was marked."""
        return self.statuses() - fault.statuses

    def recovery_s(self, since: float) -> float | None:
        done = [self.answered[i] for i, t in self.begun.items() if t >= since and i in self.answered]
        return round(min(done) - since, 2) if done else None

    async def wait_recovered(self, since: float, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (r := self.recovery_s(since)) is not None:
                return r
            await asyncio.sleep(0.1)
        return None

    async def stop(self, settle_s: float = 180) -> tuple[Tally, int]:
        """Stop starting calls; wait (bounded) for the ones under way; account from the caller's side."""
        self._stop.set()
        if self._loading:
            await self._loading
        unfinished = await finish(self.tasks, settle_s)
        self._done.set()
        if self._reviewing:
            await self._reviewing
        tally = account(self.results, self.store)
        if unfinished:
            tally.problems.insert(0, f"{unfinished} calls still unanswered {settle_s:.0f} s after the last fault")
        await replay_all(self.node, self.results, tally)
        return tally, unfinished

    async def aclose(self) -> None:
        await self.node.aclose()
        await self.reviewer.aclose()
