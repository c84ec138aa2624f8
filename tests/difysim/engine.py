"""The graph walker: runs one workflow run as an asyncio task and publishes Dify's events.

Scheduling follows Dify's rule: a node runs once every incoming edge is decided and at least one
was taken; a node whose incoming edges were all skipped is skipped too (and so are its
successors). Ready nodes run concurrently, so parallel branches overlap like in Dify. An edge
that closes a cycle is never decided, so its target never runs (DIFY.md: cycles are no error).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from . import events
from .apps import new_id
from .config import SimConfig
from .counted_tasks import CountedTasks
from .forms import FormRegistry
from .frames import Frame
from .graph import Graph, Scope
from .nodes import EXECUTORS, NodeContext, NodeResult, failure
from .nodes.simple import end_values
from .runs import Run
from .templates import value_to_text
from .variables import VariablePool

SILENT_TYPES = ("loop-start", "iteration-start")  # pass-through children that emit no events
CONTAINER_TYPES = ("loop", "iteration")  # nodes that run a sub-graph and emit only their own events


@dataclass
class NodeOutcome:
    handles: tuple[str, ...] = ("source",)
    error: str | None = None  # set when the node failed without an error strategy
    loop_end: bool = False  # a loop-end node ran: the loop stops after this round


@dataclass
class WalkOutcome:
    error: str | None = None
    loop_end: bool = False


class Engine:
    def __init__(self, run: Run, http: httpx.AsyncClient, config: SimConfig,
                 forms: FormRegistry | None = None) -> None:
        self.run, self.http, self.config, self.forms = run, http, config, forms
        self.graph: Graph = run.workflow.graph
        self.pool = VariablePool(system=run.system_variables())
        self.end_outputs: dict = {}
        self.streamed_ends: set[str] = set()

    async def execute(self) -> None:
        run = self.run
        run.publish("workflow_started", {"id": run.id, "workflow_id": run.workflow.id, "inputs": run.stream_inputs(),
                                         "created_at": run.created_at, "reason": "initial"})
        try:
            start = self.graph.start_node()
            if start is None:
                raise ValueError("The workflow has no start node")
            self.pool.set_outputs(start["id"], run.user_inputs)
            outcome = await self.walk(self.graph.scope(None), start["id"], None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a simulator bug must still end the run visibly
            outcome = WalkOutcome(error=f"{type(exc).__name__}: {exc}")
        if outcome.error is not None:
            run.finish("failed", {}, outcome.error)
        else:
            # Any retry or handled exception downgrades the run (fixture 03).
            run.finish("partial-succeeded" if run.exceptions_count else "succeeded", self.end_outputs, None)

    # ---------------------------------------------------------------- scheduling
    def pool_of(self, frame: Frame | None) -> VariablePool:
        return frame.pool if frame is not None else self.pool

    async def walk(self, scope: Scope, start_id: str, frame: Frame | None,
                   owner_suspends: bool = False) -> WalkOutcome:
        """Run one scope from `start_id` until nothing is left to run. `owner_suspends`: the Loop or
        Iteration node that called this counts as waiting while its children run (counted_tasks.py)."""
        edge_taken: dict[str, bool] = {}
        scheduled = {start_id}
        ready = [start_id]
        tasks: CountedTasks[str] = CountedTasks(self.run, owner_suspends)
        loop_end = False
        try:
            while ready or tasks:
                for node_id in ready:
                    tasks.start(self.run_node(scope, scope.nodes[node_id], frame), node_id)
                ready = []
                for task, node_id in await tasks.finished():
                    outcome: NodeOutcome = task.result()
                    if outcome.error is not None:
                        return WalkOutcome(error=outcome.error)
                    loop_end = loop_end or outcome.loop_end
                    ready.extend(self._advance(scope, node_id, outcome.handles, edge_taken, scheduled))
        finally:
            await tasks.close()
        return WalkOutcome(loop_end=loop_end)

    @staticmethod
    def _advance(scope: Scope, node_id: str, handles: tuple[str, ...], edge_taken: dict[str, bool],
                 scheduled: set[str]) -> list[str]:
        """Decide the node's outgoing edges; return the targets that became ready."""
        ready, pending = [], [(node_id, handles)]
        while pending:
            source, taken_handles = pending.pop()
            for edge in scope.outgoing.get(source, []):
                edge_taken[edge.id] = edge.source_handle in taken_handles
                states = [edge_taken.get(e.id) for e in scope.incoming.get(edge.target, [])]
                if None in states or edge.target in scheduled:
                    continue
                scheduled.add(edge.target)
                if any(states):
                    ready.append(edge.target)
                else:
                    pending.append((edge.target, ()))  # skipped: its edges are skipped as well
        return ready

    # ---------------------------------------------------------------- one node
    def count_step(self, frame: Frame | None) -> None:
        # total_steps counts top-level node starts and retries; loop children do not count (fixture 07).
        if frame is None:
            self.run.steps += 1

    async def run_node(self, scope: Scope, node: dict, frame: Frame | None) -> NodeOutcome:
        node_type = self.graph.node_type(node)
        if node_type in SILENT_TYPES:
            return NodeOutcome()
        if node_type in CONTAINER_TYPES:
            from .iteration import run_iteration  # containers drive this engine recursively
            from .loop import run_loop

            outcome = await (run_loop if node_type == "loop" else run_iteration)(self, node, frame)
            if outcome.error is None:
                self._stream_ready_ends(scope, node["id"], outcome.handles)  # after loop_completed (fixture 07)
            return outcome
        executor = EXECUTORS.get(node_type)
        data = node.get("data") or {}
        loop_id = frame.loop_id if frame else None
        iteration_id = frame.iteration_id if frame else None
        execution_id, created_at, started = new_id(), int(time.time()), time.monotonic()
        ctx = NodeContext(node, self.pool_of(frame), self.run, self.http, self.config, loop_id,
                          execution_id=execution_id, forms=self.forms, iteration_id=iteration_id)
        self.count_step(frame)
        self.run.publish("node_started", events.node_started(execution_id, node, created_at, loop_id, iteration_id))
        if node_type == "end" and node["id"] not in self.streamed_ends:
            self.stream_end(ctx)  # not streamed early: after the End's node_started (fixture 15)
        retry = data.get("retry_config") or {}
        max_retries = int(retry.get("max_retries") or 0) if retry.get("retry_enabled") else 0
        while True:
            attempt_started = time.monotonic()
            result = await self._attempt(executor, ctx, node_type)
            if not result.failed or ctx.attempt >= max_retries:
                break
            # Dify waits the interval first, then announces the retry and sends the same request again.
            await asyncio.sleep(float(retry.get("retry_interval") or 0) / 1000.0)
            ctx.attempt += 1
            self.run.exceptions_count += 1
            self.count_step(frame)
            retry_event = self._finished(execution_id, node, created_at, attempt_started, ctx, result, "retry",
                                         result.error, self._metadata(frame))
            self.run.publish("node_retry", {**retry_event, "retry_index": ctx.attempt})
        if ctx.resumed is not None:
            created_at, started = ctx.resumed  # a resumed node reports its resumption, not its pause (fixture 08)
        return self._conclude(scope, node, frame, ctx, result, execution_id, created_at, started)

    @staticmethod
    async def _attempt(executor, ctx: NodeContext, node_type: str) -> NodeResult:
        if executor is None:
            return failure(f"Node type {node_type} is not supported by the simulator", "NotImplementedError")
        try:
            return await executor(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unexpected error fails the node like a node error would
            return failure(str(exc) or type(exc).__name__, type(exc).__name__)

    def _conclude(self, scope: Scope, node: dict, frame: Frame | None, ctx: NodeContext, result: NodeResult,
                  execution_id: str, created_at: int, started: float) -> NodeOutcome:
        data = node.get("data") or {}
        metadata = self._metadata(frame)
        status, error, outputs, handles = "succeeded", None, result.outputs, result.handles
        if result.failed:
            self.run.exceptions_count += 1  # a final failure counts too, handled or not (fixtures 04, 05)
            strategy = data.get("error_strategy")
            if strategy not in ("fail-branch", "default-value"):
                event = self._finished(execution_id, node, created_at, started, ctx, result, "failed",
                                       result.error, metadata)
                self.run.publish("node_finished", event)
                return NodeOutcome(error=result.error)
            # The error strategy turns the failure into an `exception`; the real status/body are lost.
            status, error = "exception", "Unknown error"
            outputs = {"error_message": result.error, "error_type": result.error_type}
            if strategy == "default-value":
                defaults = {d.get("key"): d.get("value") for d in data.get("default_value") or []}
                outputs = {**defaults, **outputs}
            handles = ("fail-branch",) if strategy == "fail-branch" else ("source",)
            metadata = {**(metadata or {}), "error_strategy": strategy}
        ctx.pool.set_outputs(node["id"], outputs)
        if self.graph.node_type(node) == "end" and frame is None:
            self.end_outputs.update(outputs)
        if not (result.failed and data.get("error_strategy") == "default-value"):
            # Dify streams a ready End's text before this node_finished (fixtures 02, 05, 14), but after
            # it when default values stood in (fixture 15).
            self._stream_ready_ends(scope, node["id"], handles)
        shown = NodeResult(status=status, inputs=result.inputs, process_data=result.process_data, outputs=outputs)
        self.run.publish("node_finished", self._finished(execution_id, node, created_at, started, ctx, shown,
                                                         status, error, metadata))
        return NodeOutcome(handles=handles, loop_end=self.graph.node_type(node) == "loop-end")

    @staticmethod
    def _metadata(frame: Frame | None) -> dict | None:
        return frame.metadata() if frame else None

    @staticmethod
    def _finished(execution_id: str, node: dict, created_at: int, started: float, ctx: NodeContext,
                  result: NodeResult, status: str, error: str | None, metadata: dict | None) -> dict:
        return events.node_finished(execution_id, node, created_at=created_at, finished_at=int(time.time()),
                                    loop_id=ctx.loop_id, iteration_id=ctx.iteration_id, inputs=result.inputs,
                                    process_data=result.process_data,
                                    outputs=result.outputs, status=status, error=error,
                                    elapsed_time=time.monotonic() - started, execution_metadata=metadata)

    # ---------------------------------------------------------------- End node text chunks
    def _stream_ready_ends(self, scope: Scope, node_id: str, handles: tuple[str, ...]) -> None:
        """Like Dify, stream an End's text as soon as its variables exist: before this node's node_finished."""
        for edge in scope.outgoing.get(node_id, []):
            target = scope.nodes[edge.target]
            if edge.source_handle not in handles or self.graph.node_type(target) != "end":
                continue
            if edge.target in self.streamed_ends:
                continue
            selectors = [o.get("value_selector") or [] for o in (target.get("data") or {}).get("outputs") or []]
            if all(s and (s[0] == "sys" or self.pool.scope(s[0])) for s in selectors):
                self.stream_end(NodeContext(target, self.pool, self.run, self.http, self.config))

    def stream_end(self, ctx: NodeContext) -> None:
        """text_chunk per non-null output, "\\n" (selector [end, "answer"]) after each but the last."""
        self.streamed_ends.add(ctx.node_id)
        rows = end_values(ctx)
        for i, (_, selector, value) in enumerate(rows):
            if value is None:
                continue
            self.run.publish("text_chunk", events.text_chunk(value_to_text(value), selector))
            if i < len(rows) - 1:
                self.run.publish("text_chunk", events.text_chunk("\n", [ctx.node_id, "answer"]))
