"""The step view: checkpoints that `hitl instrument --step` adds (shared/dsl/step.py) pause after a node
with `node_output` = `{node_id: {var: value}}` of every node run so far, one round (`max_rounds` 1).

Recognised by that shape (not by the message, which the recipe lets the user choose): an object of
objects that has the checkpoint's own node among its keys. Shown as a variable inspector per node
(its inputs as Dify recorded them, when the run was streamed; its outputs as the step sent them),
the node that comes next, and an editor that sends the edited variables as an `edit` decision.
"""
from __future__ import annotations

import json
from typing import Any

from shared.store import runs as run_store


def is_step(cp: dict[str, Any]) -> bool:
    out = cp.get("node_output")
    return (cp.get("kind", "http") == "http" and cp.get("max_rounds") == 1 and isinstance(out, dict)
            and bool(out) and all(isinstance(v, dict) for v in out.values()) and cp.get("node_id") in out)


def edit_text(value: Any) -> tuple[str, bool]:
    """(the text a reviewer edits, whether it must be JSON): strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value, False
    return json.dumps(value, indent=2, ensure_ascii=False), True


def next_node(conn, cp: dict[str, Any]) -> dict[str, Any] | None:
    """The node after the stepped one: as this run recorded it, else as the latest other run of the
    same workflow did (labelled so); None when no streamed run shows it."""
    app, run_id, node_id = cp["app"], cp["workflow_run_id"], cp["node_id"]
    found = run_store.node_after(conn, app, run_id, node_id)
    if found is not None:
        return {"node_id": found["node_id"], "title": found.get("title"), "type": found.get("node_type"),
                "source": "this run"}
    earlier = run_store.earlier_run_with_node(conn, app, cp.get("workflow_id"), node_id, run_id)
    if earlier:
        found = run_store.node_after(conn, app, earlier, node_id)
        if found is not None:
            return {"node_id": found["node_id"], "title": found.get("title"), "type": found.get("node_type"),
                    "source": f"the last run of this workflow ({earlier[:8]})"}
    return None


def step_view(conn, cp: dict[str, Any], run_nodes: list[dict[str, Any]]) -> dict[str, Any]:
    latest: dict[str, dict[str, Any]] = {}
    for n in run_nodes:  # in run order: the last execution of a node (a loop's) wins
        latest[n["node_id"]] = n
    nodes = []
    for node_id, outputs in cp["node_output"].items():
        seen = latest.get(node_id) or {}
        fields = []
        for var, value in outputs.items():
            text, is_json = edit_text(value)
            fields.append({"name": str(var), "text": text, "json": is_json,
                           "unresolved": isinstance(value, str) and value == f"{node_id}.{var}"})
        inputs = seen.get("inputs")
        nodes.append({"id": node_id, "title": seen.get("title") or node_id, "type": seen.get("node_type"),
                      "status": seen.get("status"), "current": node_id == cp["node_id"], "fields": fields,
                      "inputs": [(str(k), edit_text(v)[0]) for k, v in inputs.items()] if isinstance(inputs, dict)
                      else None})
    return {"nodes": nodes, "next": next_node(conn, cp), "current": cp["node_id"]}
