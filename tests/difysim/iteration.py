"""The Iteration node: runs its child sub-graph once per item of a list, emitting iteration_* events.

Data: `iterator_selector` (a list variable), `output_selector` (what each item contributes to the
`output` list), `is_parallel` + `parallel_nums` (default 10), `error_handle_mode` (`terminated`,
`continue-on-error`: the item's output is null, `remove-abnormal-output`: it is dropped),
`start_node_id` (= `<id>start`, a `iteration-start` child). Inside, `[<id>, "item"]` and
`[<id>, "index"]` are the current item and its 0-based index. Like the Loop, it emits no node events
of its own; its children's carry `iteration_id` and `execution_metadata.iteration_index`.
A parallel Iteration gives each item its own copy of the variables, so items cannot see each other.
A Human Input child may pause the run inside an item (Dify 1.16+); the iteration goes on once resumed.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import events
from .counted_tasks import CountedTasks
from .frames import Frame
from .variables import MISSING, VariablePool

if TYPE_CHECKING:
    from .engine import Engine, NodeOutcome, WalkOutcome

DEFAULT_PARALLEL_NUMS = 10


class IterationFailed(Exception):
    pass


class Iteration:
    def __init__(self, engine: Engine, node: dict, frame: Frame | None) -> None:
        self.engine, self.node, self.frame = engine, node, frame
        self.data, self.iteration_id = node.get("data") or {}, node["id"]
        self.pool = engine.pool_of(frame)
        self.scope = engine.graph.scope(self.iteration_id)
        self.start_id = self.data.get("start_node_id") or f"{self.iteration_id}start"
        self.mode = self.data.get("error_handle_mode") or "terminated"
        self.durations: dict[str, float] = {}

    def child_frame(self, index: int, item: Any, pool: VariablePool) -> Frame:
        pool.set_outputs(self.iteration_id, {"item": item, "index": index})
        return Frame(self.iteration_id, "iteration", index, pool, self.frame)

    def item_output(self, pool: VariablePool) -> Any:
        value = pool.get(self.data.get("output_selector") or [])
        return None if value is MISSING else value

    def judge(self, index: int, outcome: WalkOutcome, pool: VariablePool, outputs: dict[int, Any]) -> None:
        """Record one item's contribution; raise IterationFailed when the error mode says so."""
        if outcome.error is None:
            outputs[index] = self.item_output(pool)
        elif self.mode == "continue-on-error":
            outputs[index] = None
        elif self.mode != "remove-abnormal-output":
            raise IterationFailed(outcome.error)

    async def run_sequential(self, items: list) -> dict[int, Any]:
        outputs: dict[int, Any] = {}
        for index, item in enumerate(items):
            started = time.monotonic()
            # The iteration waits while its children run (a Human Input child may pause the run here).
            outcome = await self.engine.walk(self.scope, self.start_id, self.child_frame(index, item, self.pool),
                                             owner_suspends=True)
            self.durations[str(index)] = round(time.monotonic() - started, 6)
            self.judge(index, outcome, self.pool, outputs)
            if index + 1 < len(items):
                self.engine.run.publish("iteration_next", events.iteration_next(
                    self.node, int(time.time()), index + 1, outputs.get(index)))
        return outputs

    async def run_parallel(self, items: list) -> dict[int, Any]:
        limit = max(1, int(self.data.get("parallel_nums") or DEFAULT_PARALLEL_NUMS))
        waiting = deque(enumerate(items))
        outputs: dict[int, Any] = {}
        tasks: CountedTasks[tuple[int, VariablePool, float]] = CountedTasks(self.engine.run, owner_suspends=True)
        try:
            while waiting or tasks:
                while waiting and len(tasks) < limit:
                    index, item = waiting.popleft()
                    pool = self.pool.fork()
                    walk = self.engine.walk(self.scope, self.start_id, self.child_frame(index, item, pool),
                                            owner_suspends=True)
                    tasks.start(walk, (index, pool, time.monotonic()))
                for task, (index, pool, started) in await tasks.finished():
                    self.durations[str(index)] = round(time.monotonic() - started, 6)
                    self.judge(index, task.result(), pool, outputs)
        finally:
            await tasks.close()
        return outputs


async def run_iteration(engine: Engine, node: dict, frame: Frame | None) -> NodeOutcome:
    from .engine import NodeOutcome

    it = Iteration(engine, node, frame)
    engine.count_step(frame)  # one step, like the Loop; its children do not count
    selector = it.data.get("iterator_selector") or []
    items = it.pool.get(selector)
    if items is MISSING or items is None:
        return NodeOutcome(error=f"Iterator variable {'.'.join(map(str, selector))} not found")
    if not isinstance(items, list):
        return NodeOutcome(error=f"Invalid iterator value: {items}, please provide a list.")
    inputs = {"iterator_selector": items}
    created_at, started = int(time.time()), time.monotonic()
    engine.run.publish("iteration_started", events.iteration_started(node, created_at, inputs, len(items)))
    error = None
    try:
        runner = it.run_parallel if it.data.get("is_parallel") else it.run_sequential
        collected = await runner(items)
    except IterationFailed as exc:
        error, collected = str(exc), {}
    outputs = {"output": [collected[i] for i in sorted(collected)]}
    it.pool.set_outputs(it.iteration_id, outputs)
    engine.run.publish("iteration_completed", events.iteration_completed(
        node, created_at=created_at, finished_at=int(time.time()), inputs=inputs, outputs=outputs,
        status="failed" if error else "succeeded", error=error, elapsed_time=time.monotonic() - started,
        steps=len(items), durations=it.durations))
    return NodeOutcome(error=error) if error else NodeOutcome()
