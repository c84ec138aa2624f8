"""When bulk runs (bulk.py) finish: one task writes each final record status at its promised time."""
from __future__ import annotations

import asyncio
import heapq
import time

from .runs import Run

FINAL_ERRORS = {"failed": "Simulated failure (bulk run)", "stopped": "Stopped by user."}


class BulkFinisher:
    """One task that finishes scheduled runs when their time comes."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Run, str]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def schedule(self, entries: list[tuple[float, Run, str]]) -> None:
        for finishes_at, run, status in entries:
            heapq.heappush(self.heap, (finishes_at, run.seq, run, status))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="bulk-run-finisher")
        self.wake.set()

    async def _run(self) -> None:
        while True:
            if not self.heap:
                self.wake.clear()
                await self.wake.wait()
                continue
            delay = self.heap[0][0] - time.time()
            if delay > 0:
                self.wake.clear()
                try:  # wake early when an earlier run is scheduled
                    await asyncio.wait_for(self.wake.wait(), timeout=min(delay, 1.0))
                except TimeoutError:
                    pass
                continue
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                _, _, run, status = heapq.heappop(self.heap)
                finish(run, status, now)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def finish(run: Run, status: str, now: float) -> None:
    # elapsed_time is measured from the (possibly back-dated) created_at, as a real run's would be.
    run.started_monotonic = time.monotonic() - max(0.0, now - run.created_at)
    run.steps = 2  # Start and End, as if the graph had run
    run.exceptions_count = 1 if status == "partial-succeeded" else 0
    run.finish(status, {"result": "ok"} if status in ("succeeded", "partial-succeeded") else {},
               FINAL_ERRORS.get(status))
