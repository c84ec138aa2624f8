"""Builders for the nodes of the README recipe ("The checkpoint node in a real Dify").

Each returns plain data with the shapes of DIFY.md and fixtures 06/07/08/17; `document.to_yaml`
turns it into the file's containers. No Code node anywhere: routing is IF/ELSE on the raw answer
(`start with {"action":"approve"`), loop state lives in loop variables written by a Variable
Assigner (version "2": without it Dify silently picks v1).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("approve", "revise", "edit", "abort")
FAILED = '{"action":"failed"}'  # what a revise loop records when the checkpoint call itself failed
TOKEN_VAR = "HITL_CHECKPOINT_TOKEN"
_NAMESPACE = uuid.UUID("6f1c9e57-43c9-4c3b-9d37-1a4b2f3b9d10")


def stable_uuid(*parts: str) -> str:
    """The same input file gives the same output file (ids of delivery methods, env variables)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def action_prefix(action: str) -> str:
    # ingest answers compact JSON with `action` first (services/ingest/checkpoints.py::answer).
    return '{"action":"' + action + '"'


@dataclass
class RecipeSettings:
    url: str  # the full checkpoint URL, .../v1/checkpoints
    token_var: str = TOKEN_VAR
    read_timeout_s: int = 600
    timeout_s: int = 900
    on_timeout: str = "abort"
    assignees: list[str] = field(default_factory=list)
    message: str | None = None
    max_rounds: int = 5


@dataclass(frozen=True)
class Place:
    """Where a new node goes: its position, and the loop it sits in (None: top level)."""

    x: float
    y: float
    loop: str | None = None


def body_template(fields: list[tuple[str, str]]) -> str:
    """A JSON body template from (key, raw JSON text) pairs; raw text may hold `{{#…#}}` references."""
    return "{" + ", ".join(f"{json.dumps(k)}: {raw}" for k, raw in fields) + "}"


def checkpoint_fields(node_id: str, node_output: str, settings: RecipeSettings, *, round_: str,
                      max_rounds: int, message: str, mode: str | None = None) -> list[tuple[str, str]]:
    """The checkpoint body, node_output first.

    Dify inserts text raw and then repairs the JSON (DIFY.md), so text holding JSON of its own (a
    reviewer's decision fed back by a revise loop and echoed by the node) is mangled: its keys
    join the body, and its closing brace may end the body early. With the text first, a key it
    brings is overridden by the real field after it (the last duplicate wins), and a brace that
    ends the body early drops the required fields, so ingest refuses the call (400 -> retries ->
    fail branch) instead of opening a wrong round."""
    fields = [("node_output", node_output), ("message", json.dumps(message)),
              ("workflow_run_id", '"{{#sys.workflow_run_id#}}"'), ("app_id", '"{{#sys.app_id#}}"'),
              ("workflow_id", '"{{#sys.workflow_id#}}"'), ("user", '"{{#sys.user_id#}}"'),
              ("node_id", json.dumps(node_id)), ("round", round_), ("read_timeout_s", str(settings.read_timeout_s)),
              ("timeout_s", str(settings.timeout_s)), ("on_timeout", json.dumps(settings.on_timeout)),
              ("assignees", json.dumps(settings.assignees)), ("max_rounds", str(max_rounds))]
    if mode:
        fields.append(("mode", json.dumps(mode)))
    return fields


def recall_fields(node_id: str, settings: RecipeSettings, *, round_: str) -> list[tuple[str, str]]:
    """The "reviewed output" call: the same checkpoint (run, node, round) asked again once decided.

    ingest answers a decided checkpoint at once (decider: a known round is `replayed`). With
    `"answer": "text"` it is meant to answer the decision's text alone — the output for approve/edit,
    the feedback for revise — so that templates can use `body` as is; an ingest that does not know
    the field ignores it (CheckpointCall: extra="ignore") and answers the usual JSON decision."""
    return [("workflow_run_id", '"{{#sys.workflow_run_id#}}"'), ("app_id", '"{{#sys.app_id#}}"'),
            ("workflow_id", '"{{#sys.workflow_id#}}"'), ("user", '"{{#sys.user_id#}}"'),
            ("node_id", json.dumps(node_id)), ("round", round_), ("answer", '"text"'),
            ("read_timeout_s", str(settings.read_timeout_s))]


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _node(node_id: str, data: dict[str, Any], place: Place) -> dict[str, Any]:
    node: dict[str, Any] = {"data": data, "id": node_id, "position": {"x": _num(place.x), "y": _num(place.y)},
                            "type": "custom"}
    data.setdefault("desc", "")
    if place.loop:
        data.update({"isInIteration": False, "isInLoop": True, "loop_id": place.loop})
        node.update({"parentId": place.loop, "zIndex": 1002})
    return node


def http_checkpoint(node_id: str, title: str, body: str, settings: RecipeSettings, place: Place) -> dict[str, Any]:
    """The recipe's HTTP node: bearer token from a secret env variable, read timeout, retry, fail branch.

    Dify renders the API-key field through the variable pool before use (graphon
    nodes/http_request/executor.py: `convert_template(variable_pool, …api_key)`), so `{{#env.X#}}` works
    there, and the log copy of the request masks secret variables."""
    return _node(node_id, {
        "authorization": {"config": {"api_key": "{{#env." + settings.token_var + "#}}", "type": "bearer"},
                          "type": "api-key"},
        "body": {"data": [{"key": "", "type": "text", "value": body}], "type": "json"},
        "default_value": [], "error_strategy": "fail-branch", "headers": "", "method": "post", "params": "",
        "retry_config": {"max_retries": 10, "retry_enabled": True, "retry_interval": 5000},
        "timeout": {"connect": 10, "read": settings.read_timeout_s, "write": 20},
        "title": title, "type": "http-request", "url": settings.url, "variables": [],
    }, place)


def condition(cid: str, selector: list[str], operator: str, value: Any, var_type: str = "string") -> dict[str, Any]:
    return {"comparison_operator": operator, "id": cid, "value": value, "varType": var_type,
            "variable_selector": list(selector)}


def if_else(node_id: str, title: str, cases: list[tuple[str, list[dict[str, Any]]]], place: Place) -> dict[str, Any]:
    """IF/ELSE with the given (case_id, conditions) cases, each OR-ed; ELSE leaves by handle `false`."""
    return _node(node_id, {
        "cases": [{"case_id": cid, "conditions": conds, "logical_operator": "or"} for cid, conds in cases],
        "title": title, "type": "if-else"}, place)


def decision_router(node_id: str, title: str, selector: list[str], place: Place) -> dict[str, Any]:
    """approve/edit -> case `approved`, abort -> case `aborted`, anything else -> ELSE (`false`)."""
    return if_else(node_id, title, [
        ("approved", [condition(f"{node_id}_approve", selector, "start with", action_prefix("approve")),
                      condition(f"{node_id}_edit", selector, "start with", action_prefix("edit"))]),
        ("aborted", [condition(f"{node_id}_abort", selector, "start with", action_prefix("abort"))]),
    ], place)


def end_node(node_id: str, title: str, outputs: list[tuple[str, list[str]]], place: Place) -> dict[str, Any]:
    return _node(node_id, {"outputs": [{"value_selector": list(sel), "value_type": "string", "variable": name}
                                       for name, sel in outputs], "title": title, "type": "end"}, place)


def assigner(node_id: str, title: str, items: list[dict[str, Any]], place: Place) -> dict[str, Any]:
    return _node(node_id, {"items": items, "title": title, "type": "assigner", "version": "2"}, place)


def assign(target: list[str], value: Any, *, variable: bool = True, operation: str = "over-write") -> dict[str, Any]:
    return {"input_type": "variable" if variable else "constant", "operation": operation,
            "value": list(value) if variable else value, "variable_selector": list(target)}


def loop_node(node_id: str, title: str, *, count: int, variables: list[tuple[str, str, Any]],
              breaks: list[dict[str, Any]], logical_operator: str, place: Place,
              size: tuple[int, int]) -> dict[str, Any]:
    node = _node(node_id, {
        "break_conditions": breaks, "logical_operator": logical_operator, "loop_count": count,
        "loop_variables": [{"id": f"{node_id}_{label}", "label": label, "value": value, "value_type": "constant",
                            "var_type": var_type} for label, var_type, value in variables],
        "outputs": {}, "start_node_id": f"{node_id}start", "title": title, "type": "loop"}, place)
    node.update({"height": size[1], "width": size[0], "zIndex": 1})
    return node


def loop_start(loop_id: str) -> dict[str, Any]:
    return {"data": {"desc": "", "isInLoop": True, "title": "", "type": "loop-start"}, "draggable": False,
            "id": f"{loop_id}start", "parentId": loop_id, "position": {"x": 24, "y": 68}, "selectable": False,
            "type": "custom-loop-start", "zIndex": 1002}


def human_input(node_id: str, title: str, reviewed: str, var: str, hours: int, place: Place) -> dict[str, Any]:
    """Dify's own Human Input node: webapp delivery (the service API only submits forms that have it),
    actions approve / revise / abort, a paragraph input prefilled with the reviewed output."""
    ref = "{{#" + reviewed + "." + var + "#}}"
    return _node(node_id, {
        "delivery_methods": [{"config": {}, "enabled": True, "id": stable_uuid(node_id, "webapp"), "type": "webapp"}],
        "form_content": f"## {title}\n\n{ref}\n\nEdit the text below if needed (for a revision: what to change):"
                        "\n\n{{#$output.edited#}}",
        "inputs": [{"default": {"selector": [reviewed, var], "type": "variable", "value": ""},
                    "output_variable_name": "edited", "type": "paragraph"}],
        "timeout": hours, "timeout_unit": "hour", "title": title, "type": "human-input",
        "user_actions": [{"button_style": "primary", "id": "approve", "title": "Approve"},
                         {"button_style": "default", "id": "revise", "title": "Request revision"},
                         {"button_style": "ghost", "id": "abort", "title": "Abort"}],
    }, place)


def edge(source: str, handle: str, target: str, loop: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"isInIteration": False, "isInLoop": loop is not None}
    if loop:
        data["loop_id"] = loop
    return {"data": data, "id": f"{source}-{handle}-{target}-target", "source": source, "sourceHandle": handle,
            "target": target, "targetHandle": "target", "type": "custom"}
