"""The paused state of a run (Human Input nodes): who waits, when the run pauses, how it resumes.

Real Dify frees the worker while a run is paused and starts a new one on resumption; the simulator
keeps each waiting node's coroutine parked on a future instead, which looks the same from outside.
What must look the same (fixtures 08, 09, 11, 13, 18):
- pausing publishes `workflow_paused` (after each node's `human_input_required`), closes the streams
  that stop at a pause, answers blocking callers, and the record says `paused` with the steps so far;
- a resumption is announced by `workflow_started` with `reason: "resumption"` on the SAME run id and
  task id, carrying the resumption time as `created_at`; elapsed_time restarts with it;
- a stop of a paused run only raises a flag; when the run is resumed within the flag's lifetime the
  resumed run dies silently and the record is left `running` forever (fixture 11).

Several Human Input nodes may wait at once (parallel branches, a parallel iteration). DIFY.md says
nothing about it, so the simulator makes the conservative choice:
- each node announces its own form (`human_input_required`, its own token) when it is reached;
- the run pauses — ONE `workflow_paused` listing every waiting node in `paused_nodes` and `reasons` —
  only once nothing else can run (every other branch has finished or waits on a form as well);
- the run resumes (one `workflow_started` "resumption") only when EVERY form of the pause is decided
  (submitted or timed out); a decided node waits for the others. A form decided before the run
  paused lets its node go on at once.
"Nothing else can run" is counted, not guessed: the engine counts each node task as busy from its
creation until its walk has scheduled its successors, and as suspended while it waits on a person
(a Loop or Iteration node counts as suspended while its children run). The run may pause when busy
== suspended, checked after the current step of the event loop, so that no hand-over is missed.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import Run

# Dify keeps a stop request in Redis for 10 minutes; a resumption after that runs normally.
STOP_FLAG_TTL_S = 600.0


@dataclass(frozen=True)
class EndWithoutResuming:
    """A decision that ends the paused run instead of continuing its graph.

    Used by the global human-input timeout (record `stopped`, nothing streamed) and by the
    `resume_ends_stopped` fault switch (record and stream `stopped`)."""
    status: str
    error: str | None
    announce: bool  # publish workflow_finished to the streams still listening


DIED = object()  # what a waiting node receives when its resumed run hits the stop flag


@dataclass(eq=False)
class Waiter:
    """A node parked on a person's decision."""
    node_id: str
    reason: dict | None  # its entry of `reasons` (None: a waiting node without a form)
    future: asyncio.Future = field(repr=False)
    decided: bool = False
    value: Any = None


class PausableRun:
    """Mixin of `Run` (runs.py): everything about `paused`."""

    def _init_pausing(self: Run) -> None:
        self.pause_count = 0  # > 0: a state snapshot is rebuilt like Dify's, not replayed raw
        self.paused_payload: dict | None = None  # the current workflow_paused data
        self.stop_requested_at: float | None = None
        self.waiters: list[Waiter] = []  # nodes waiting on a person, in the order they were reached
        self.busy = 0  # node tasks created and not yet handed over by their walk
        self.suspended = 0  # of those, the ones waiting (on a person, or on their children)
        self._pause_check_scheduled = False

    @property
    def stop_requested(self: Run) -> bool:
        return self.stop_requested_at is not None

    def request_stop_while_paused(self: Run) -> None:
        # Stopping a paused run does nothing visible until it is resumed (fixture 11).
        self.stop_requested_at = time.monotonic()

    # ---------------------------------------------------------------- activity (engine.walk)
    def activity_started(self: Run) -> None:
        self.busy += 1

    def activity_finished(self: Run, count: int = 1) -> None:
        self.busy -= count
        if count:
            self._schedule_pause_check()

    def suspend(self: Run) -> None:
        self.suspended += 1
        self._schedule_pause_check()

    def unsuspend(self: Run) -> None:
        self.suspended -= 1

    # ---------------------------------------------------------------- waiting nodes
    def add_waiter(self: Run, node_id: str, reason: dict | None) -> Waiter:
        """Park a node (synchronously, so that a decision can never come before it is registered)."""
        waiter = Waiter(node_id, reason, asyncio.get_running_loop().create_future())
        self.waiters.append(waiter)
        self.suspend()
        return waiter

    async def wait(self: Run, waiter: Waiter) -> Any:
        """The decision for `waiter`. Raises CancelledError when the run must end without resuming."""
        value = await waiter.future
        if value is DIED or isinstance(value, EndWithoutResuming):
            raise asyncio.CancelledError  # the graph goes no further; the engine task just ends
        return value

    def release(self: Run, waiter: Waiter, value: Any) -> bool:
        """Decide one waiting node. False when it was decided before (or never waited here)."""
        if waiter.decided or waiter not in self.waiters:
            return False
        if isinstance(value, EndWithoutResuming):
            return self.end_paused(value)
        waiter.decided, waiter.value = True, value
        if self.status != "paused":
            self._wake(waiter, value)  # decided before the run paused: the node goes on at once
        elif all(w.decided for w in self.waiters):
            self._resume_all()
        return True

    def resume(self: Run, value: Any = None) -> bool:
        """Decide every waiting node of a paused run with `value`. False if the run is not paused."""
        pending = [w for w in self.waiters if not w.decided]
        if self.status != "paused" or not pending:
            return False
        for waiter in pending:
            self.release(waiter, value)
        return True

    def end_paused(self: Run, ending: EndWithoutResuming) -> bool:
        """End the run where it waits (global timeout, fault switch): no node goes on."""
        if self.stream_ended and self.detached:
            return False
        self._end_paused(ending)
        for waiter in list(self.waiters):
            self._wake(waiter, ending)
        return True

    def _wake(self: Run, waiter: Waiter, value: Any) -> None:
        self.waiters.remove(waiter)
        self.unsuspend()
        if not waiter.future.done():
            waiter.future.set_result(value)

    # ---------------------------------------------------------------- pause and resumption
    def workflow_paused_data(self: Run, paused_nodes: list[str], reasons: list[dict]) -> dict:
        """The data of `workflow_paused` (fixture 09), also the source of the blocking paused answer."""
        return {"workflow_run_id": self.id, "paused_nodes": list(paused_nodes), "outputs": {}, "reasons": reasons,
                "status": "paused", "created_at": self.created_at, "elapsed_time": self.elapsed(),
                "total_tokens": 0, "total_steps": self.steps}

    def _schedule_pause_check(self: Run) -> None:
        if not self._pause_check_scheduled:
            self._pause_check_scheduled = True
            asyncio.get_running_loop().call_soon(self._check_pause)

    def _check_pause(self: Run) -> None:
        self._pause_check_scheduled = False
        if self.status == "paused" or self.detached:
            return  # a stopped run goes on unheard (fixture 11); its waiting nodes wait forever
        waiting = [w for w in self.waiters if not w.decided]
        if waiting and self.busy == self.suspended:
            self._pause(waiting)

    def _pause(self: Run, waiting: list[Waiter]) -> None:
        payload = self.workflow_paused_data([w.node_id for w in waiting],
                                            [w.reason for w in waiting if w.reason is not None])
        self.status = "paused"
        self.pause_count += 1
        self.paused_payload = payload
        self.total_steps = self.steps  # a paused record shows its steps so far (fixture 08)
        self.publish("workflow_paused", payload)
        self.disarm_max_execution_time()  # a paused run holds no worker, so no execution time runs
        if not self.outcome.done():
            self.outcome.set_result(payload)

    def _resume_all(self: Run) -> None:
        decided, self.paused_payload = list(self.waiters), None
        if self.stop_requested and time.monotonic() - self.stop_requested_at < STOP_FLAG_TTL_S:
            self._die_on_stop_flag()
            for waiter in decided:
                self._wake(waiter, DIED)
            return
        self.stop_requested_at = None
        self.status = "running"
        self.outcome = asyncio.get_running_loop().create_future()
        # Dify's resumed worker restarts the clock: elapsed_time and the stream's created_at are
        # those of the resumption (fixture 08), while the record keeps the original created_at.
        self.started_monotonic = time.monotonic()
        self.segment_created_at = int(time.time())
        if self.max_execution_time_s is not None:
            self.arm_max_execution_time(self.max_execution_time_s)  # the resumed worker's own time limit
        self.publish("workflow_started", {"id": self.id, "workflow_id": self.workflow.id,
                                          "inputs": self.stream_inputs(), "created_at": self.segment_created_at,
                                          "reason": "resumption"})
        for waiter in decided:
            self._wake(waiter, waiter.value)

    def _end_paused(self: Run, ending: EndWithoutResuming) -> None:
        payload = self.finished_payload(ending.status, {}, ending.error)
        self.status, self.outputs, self.error = ending.status, {}, ending.error
        self.finished_at, self.elapsed_time = payload["finished_at"], payload["elapsed_time"]
        self.final_payload = {**payload, "created_at": self.created_at}
        self.paused_payload = None
        self.stream_ended = True
        if ending.announce:
            self.publish("workflow_finished", payload)
        self.detached = True
        if not self.outcome.done():
            self.outcome.set_result(payload)

    def _die_on_stop_flag(self: Run) -> None:
        # The resumed worker sees "Task stopped", the pause is deleted and nothing more is written:
        # the record reads running, 0 steps, no outputs, forever (fixture 11 paused-run-get-after-submit).
        self.status, self.outputs, self.total_steps = "running", {}, 0
        self.stream_ended = self.detached = True
