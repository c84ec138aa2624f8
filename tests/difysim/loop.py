"""The Loop node: runs its child sub-graph round after round and emits only loop_* events."""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from . import events
from .conditions import evaluate_group, to_number
from .frames import Frame
from .variables import MISSING

if TYPE_CHECKING:
    from .engine import Engine, NodeOutcome


def _coerce(value: Any, var_type: str | None) -> Any:
    if var_type == "number" and isinstance(value, str):
        number = to_number(value)
        return value if number is None else number
    return value


async def run_loop(engine: Engine, node: dict, frame: Frame | None) -> NodeOutcome:
    from .engine import NodeOutcome

    run, pool = engine.run, engine.pool_of(frame)
    data, loop_id = node.get("data") or {}, node["id"]
    engine.count_step(frame)  # the loop counts as one step; its children do not (fixture 07)
    count = int(data.get("loop_count") or 0)
    variables: dict[str, Any] = {}
    for var in data.get("loop_variables") or []:
        raw = var.get("value")
        value = pool.get(raw) if var.get("value_type") == "variable" and isinstance(raw, list) else raw
        variables[var.get("label")] = _coerce(None if value is MISSING else copy.deepcopy(value), var.get("var_type"))
    pool.set_outputs(loop_id, variables)
    inputs = {"loop_count": count, **copy.deepcopy(variables)}
    created_at, started = int(time.time()), time.monotonic()
    run.publish("loop_started", events.loop_started(node, created_at, inputs, count))

    def should_break() -> bool:
        conditions = data.get("break_conditions") or []
        return bool(conditions) and evaluate_group(conditions, data.get("logical_operator", "and"), pool)[0]

    scope = engine.graph.scope(loop_id)
    start_id = data.get("start_node_id") or f"{loop_id}start"
    durations: dict[str, float] = {}
    variable_map: dict[str, dict] = {}
    rounds, reason, error = 0, "loop_completed", None
    # Break conditions are checked once before the first round and after each round.
    if should_break():
        reason = "loop_break"
    else:
        for index in range(count):
            round_started = time.monotonic()
            # The loop waits while its children run (a Human Input child may pause the run here).
            outcome = await engine.walk(scope, start_id, Frame(loop_id, "loop", index, pool, frame),
                                        owner_suspends=True)
            durations[str(index)] = round(time.monotonic() - round_started, 6)
            variable_map[str(index)] = {k: copy.deepcopy(pool.scope(loop_id).get(k)) for k in variables}
            rounds = index + 1
            if outcome.error is not None:
                error = outcome.error
                break
            if outcome.loop_end or should_break():
                reason = "loop_break"
                break
            if index + 1 < count:
                run.publish("loop_next", events.loop_next(node, int(time.time()), index + 1))
    outputs = {**{k: pool.scope(loop_id).get(k) for k in variables}, "loop_round": rounds}
    pool.set_outputs(loop_id, outputs)
    run.publish("loop_completed", events.loop_completed(
        node, created_at=created_at, finished_at=int(time.time()), inputs=inputs, outputs=outputs,
        status="failed" if error else "succeeded", error=error, elapsed_time=time.monotonic() - started,
        steps=count, durations=durations, variables=variable_map, completed_reason=None if error else reason))
    return NodeOutcome(error=error) if error else NodeOutcome()
