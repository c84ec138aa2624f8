"""The paused state of a run (Human Input node): pause, resume, and the ways a pause ends badly.

Real Dify frees the worker while a run is paused and starts a new one on resumption; the simulator
keeps the engine's coroutine parked on a future instead, which looks the same from outside. What
must look the same (fixtures 08, 09, 11, 13):
- pausing publishes `human_input_required` + `workflow_paused`, closes the streams that stop at a
  pause, answers blocking callers, and the record says `paused` with the steps so far;
- a resumption is announced by `workflow_started` with `reason: "resumption"` on the SAME run id and
  task id, carrying the resumption time as `created_at`; elapsed_time restarts with it;
- a stop of a paused run only raises a flag; when the run is resumed within the flag's lifetime the
  resumed run dies silently and the record is left `running` forever (fixture 11).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import Run

# Dify keeps a stop request in Redis for 10 minutes; a resumption after that runs normally.
STOP_FLAG_TTL_S = 600.0


@dataclass(frozen=True)
class EndWithoutResuming:
    """A resume value that ends the paused run instead of continuing its graph.

    Used by the global human-input timeout (record `stopped`, nothing streamed) and by the
    `resume_ends_stopped` fault switch (record and stream `stopped`)."""
    status: str
    error: str | None
    announce: bool  # publish workflow_finished to the streams still listening


class PausableRun:
    """Mixin of `Run` (runs.py): everything about `paused`."""

    def _init_pausing(self: "Run") -> None:
        self.resume_waiter: asyncio.Future | None = None
        self.pause_count = 0  # > 0: a state snapshot is rebuilt like Dify's, not replayed raw
        self.paused_payload: dict | None = None  # the current workflow_paused data
        self.stop_requested_at: float | None = None

    @property
    def stop_requested(self: "Run") -> bool:
        return self.stop_requested_at is not None

    def request_stop_while_paused(self: "Run") -> None:
        # Stopping a paused run does nothing visible until it is resumed (fixture 11).
        self.stop_requested_at = time.monotonic()

    def workflow_paused_data(self: "Run", paused_nodes: list[str], reasons: list[dict]) -> dict:
        """The data of `workflow_paused` (fixture 09), also the source of the blocking paused answer."""
        return {"workflow_run_id": self.id, "paused_nodes": list(paused_nodes), "outputs": {}, "reasons": reasons,
                "status": "paused", "created_at": self.created_at, "elapsed_time": self.elapsed(),
                "total_tokens": 0, "total_steps": self.steps}

    async def pause_until_resumed(self: "Run", paused_payload: dict,
                                  extra_events: list[tuple[str, dict]] = ()) -> Any:
        """Pause the run: publish `extra_events` + workflow_paused, close the streams, answer blocking
        callers with `paused_payload`, and wait until `resume(value)`; then announce the resumption
        and return `value`. Raises CancelledError when the run must end without resuming."""
        for event, data in extra_events:
            self.publish(event, data)
        self.status = "paused"
        self.pause_count += 1
        self.paused_payload = paused_payload
        self.total_steps = self.steps  # a paused record shows its steps so far (fixture 08)
        self.publish("workflow_paused", paused_payload)
        self.disarm_max_execution_time()  # a paused run holds no worker, so no execution time runs
        if not self.outcome.done():
            self.outcome.set_result(paused_payload)
        self.resume_waiter = asyncio.get_running_loop().create_future()
        value = await self.resume_waiter
        self.resume_waiter = None
        self.paused_payload = None
        if isinstance(value, EndWithoutResuming):
            self._end_paused(value)
            raise asyncio.CancelledError  # the graph goes no further; the engine task just ends
        if self.stop_requested and time.monotonic() - self.stop_requested_at < STOP_FLAG_TTL_S:
            self._die_on_stop_flag()
            raise asyncio.CancelledError
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
        return value

    def resume(self: "Run", value: Any = None) -> bool:
        """Continue a paused run with `value` (a Decision for the human-input node). False if not paused."""
        if self.resume_waiter is None or self.resume_waiter.done():
            return False
        self.resume_waiter.set_result(value)
        return True

    def _end_paused(self: "Run", ending: EndWithoutResuming) -> None:
        payload = self.finished_payload(ending.status, {}, ending.error)
        self.status, self.outputs, self.error = ending.status, {}, ending.error
        self.finished_at, self.elapsed_time = payload["finished_at"], payload["elapsed_time"]
        self.final_payload = {**payload, "created_at": self.created_at}
        self.stream_ended = True
        if ending.announce:
            self.publish("workflow_finished", payload)
        self.detached = True
        if not self.outcome.done():
            self.outcome.set_result(payload)

    def _die_on_stop_flag(self: "Run") -> None:
        # The resumed worker sees "Task stopped", the pause is deleted and nothing more is written:
        # the record reads running, 0 steps, no outputs, forever (fixture 11 paused-run-get-after-submit).
        self.status, self.outputs, self.total_steps = "running", {}, 0
        self.stream_ended = self.detached = True
