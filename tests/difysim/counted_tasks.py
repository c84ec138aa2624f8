"""Node tasks of one scheduler (a walk, a parallel Iteration), counted for the pause rule.

pausing.py pauses a run once busy == suspended. A task counts as busy from its creation until its
scheduler has started whatever comes after it; the scheduler's owner (the Loop or Iteration node
that runs this scope) counts as suspended while the tasks run. Counting that way, no hand-over
between two tasks ever looks like "nothing left to run".
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .runs import Run

Key = TypeVar("Key")


class CountedTasks(Generic[Key]):
    def __init__(self, run: Run, owner_suspends: bool) -> None:
        self.run, self.owner_suspends = run, owner_suspends
        self.running: dict[asyncio.Task, Key] = {}
        self.handed_over = 0  # finished tasks, released once their successors are counted
        self.owner_suspended = False

    def __len__(self) -> int:
        return len(self.running)

    def start(self, coroutine: Coroutine[Any, Any, Any], key: Key) -> None:
        self.running[asyncio.create_task(coroutine)] = key
        self.run.activity_started()

    async def finished(self) -> list[tuple[asyncio.Task, Key]]:
        """Wait for the next finished tasks (call after starting the successors of the last ones)."""
        if self.owner_suspends and not self.owner_suspended:
            self.run.suspend()
            self.owner_suspended = True
        self.run.activity_finished(self.handed_over)
        self.handed_over = 0
        done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
        self.handed_over = len(done)
        return [(task, self.running.pop(task)) for task in done]

    async def close(self) -> None:
        """Cancel what still runs and give back every count (the owner is busy again first)."""
        for task in self.running:
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        if self.owner_suspended:
            self.run.unsuspend()
            self.owner_suspended = False
        self.run.activity_finished(self.handed_over + len(self.running))
        self.handed_over = 0
        self.running.clear()
