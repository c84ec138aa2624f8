"""The state snapshot a re-attach with `include_state_snapshot=true` replays for a run that has paused.

Dify rebuilds it from its database, not from the live events, so it looks different (fixture 08
events-reattach-continue_on_pause.sse): `task_id` before `workflow_run_id`; workflow_started with
reason "initial" and the record's inputs (incl. sys.timestamp); one node_started/node_finished pair
per node execution with sequential `index`, null inputs/outputs and no `*_truncated` keys; the paused
node finished with status "paused"; then human_input_required and workflow_paused with the form
content NOT rendered. Runs that never paused keep the simulator's plain replay of their events.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .forms import Form
    from .runs import Run

NODE_KEYS = ("id", "node_id", "node_type", "title")


def _envelope(run: Run, event: str, data: dict) -> dict:
    return {"event": event, "task_id": run.task_id, "workflow_run_id": run.id, "data": data}


def _node_pair(run: Run, index: int, started: dict, finished: dict | None, paused: bool) -> list[dict]:
    base = {**{k: started.get(k) for k in NODE_KEYS}, "index": index, "predecessor_node_id": None, "inputs": None}
    tail = {"iteration_id": started.get("iteration_id"), "loop_id": started.get("loop_id")}
    out = [_envelope(run, "node_started", {**base, "created_at": started.get("created_at"), "extras": {}, **tail})]
    if finished is None and not paused:
        return out  # still running
    status = "paused" if finished is None else finished.get("status")
    out.append(_envelope(run, "node_finished", {
        **base, "process_data": None, "outputs": None, "status": status,
        "error": None if finished is None else finished.get("error"),
        "elapsed_time": 0.0 if finished is None else finished.get("elapsed_time"), "execution_metadata": None,
        "created_at": started.get("created_at"),
        "finished_at": started.get("created_at") if finished is None else finished.get("finished_at"),
        "files": [], **tail}))
    return out


def state_snapshot(run: Run, open_forms: list[Form]) -> list[dict]:
    """The replayed events, in Dify's order; `open_forms` are the run's forms still waiting."""
    events = [_envelope(run, "workflow_started", {
        "id": run.id, "workflow_id": run.workflow.id, "inputs": json.loads(run.record_inputs_json()),
        "created_at": run.created_at, "reason": "initial"})]
    started: dict[str, dict] = {}
    finished: dict[str, dict] = {}
    for message in run.events:
        data = message.get("data") or {}
        if message["event"] == "node_started":
            started.setdefault(data.get("id"), data)  # a resumed node announces itself again: keep the first
        elif message["event"] == "node_finished":
            finished[data.get("id")] = data
    paused_nodes = set((run.paused_payload or {}).get("paused_nodes") or []) if run.status == "paused" else set()
    for index, (execution_id, data) in enumerate(started.items(), start=1):
        events += _node_pair(run, index, data, finished.get(execution_id), data.get("node_id") in paused_nodes)
    if run.status != "paused" or run.paused_payload is None:
        return events
    # One human_input_required per form still open (several when parallel branches wait at once);
    # a form decided while the others still wait is no longer offered.
    raw = {form.id: form.raw_content for form in open_forms}
    for form in open_forms:
        events.append(_envelope(run, "human_input_required", form.required_event(content=form.raw_content)))
    reasons = [{**reason, "form_content": raw[reason.get("form_id")]}
               for reason in run.paused_payload.get("reasons") or [] if reason.get("form_id") in raw]
    waiting_nodes = [n for n in run.paused_payload.get("paused_nodes") or []
                     if n in {form.node_id for form in open_forms} or not open_forms]
    events.append(_envelope(run, "workflow_paused", {**run.paused_payload, "paused_nodes": waiting_nodes,
                                                      "reasons": reasons, "elapsed_time": 0.0}))
    return events
