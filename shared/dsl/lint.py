"""`hitl lint`: check an app's checkpoint nodes against the README recipe.

A checkpoint is an HTTP Request node calling ingest's `/v1/checkpoints` (or `/api/user-confirmation`).
Each rule says what goes wrong at run time and how to fix it; the graph checks of graph.py run
too, since Dify imports a broken graph without a word (fixture 17).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from json_repair import repair_json

from .document import Document
from .graph import FAIL_BRANCH, TEMPLATE_REF, Graph, node_type, parent_of, title, validate

CHECKPOINT_PATHS = ("/v1/checkpoints", "/api/user-confirmation")
RUN_LIMIT_S = 1200  # WORKFLOW_MAX_EXECUTION_TIME: every run ends here, even while a node waits (fixture 16)
SERVER_MAX_READ_S = 600  # HTTP_REQUEST_MAX_READ_TIMEOUT: a node read timeout of 0/null means this
DEFAULT_TIMEOUT_S = 300  # HITL_DEFAULT_TIMEOUT_S when the body has no timeout_s
ROUTED = ("approve", "edit", "abort")
STEERING = ("workflow_run_id", "node_id", "round", "read_timeout_s", "timeout_s", "on_timeout", "max_rounds", "mode")
ACTION_IN_VALUE = re.compile(r'"action"(\s*):(\s*)"([a-z_]+)"')


@dataclass(frozen=True)
class LintProblem:
    node_id: str
    title: str
    code: str
    message: str
    fix: str

    def render(self) -> str:
        return f"{self.title} [{self.node_id}] {self.code}: {self.message}\n    fix: {self.fix}"


def is_checkpoint(node: dict) -> bool:
    if node_type(node) != "http-request":
        return False
    url = str((node.get("data") or {}).get("url") or "").split("?")[0].rstrip("/")
    return url.endswith(CHECKPOINT_PATHS)


def parse_body(node: dict) -> dict[str, tuple[Any, str | None]] | None:
    """The JSON body as {key: (value, the `{{#…#}}` reference it is, if it is one)}; None if not JSON."""
    body = (node.get("data") or {}).get("body") or {}
    items = body.get("data") or []
    if body.get("type") != "json" or not items:
        return None
    refs: list[str] = []

    def placeholder(match: re.Match) -> str:
        refs.append(match.group(0))
        return f"@@{len(refs) - 1}@@"

    text = TEMPLATE_REF.sub(placeholder, str(items[0].get("value") or ""))
    text = re.sub(r'(?<!")@@(\d+)@@(?!")', r'"@@\1@@"', text)  # a bare reference (a number, an object)
    try:
        data = json.loads(text, strict=False)
    except ValueError:
        try:
            data = json.loads(repair_json(text), strict=False)  # what Dify itself does (DIFY.md)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    fields: dict[str, tuple[Any, str | None]] = {}
    for key, value in data.items():
        ref = None
        if isinstance(value, str) and re.fullmatch(r"@@(\d+)@@", value):
            ref = refs[int(value.strip("@"))]
        fields[str(key)] = (value, ref)
    return fields


def _number(value: Any) -> float | None:
    try:
        return float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


class Linter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.problems: list[LintProblem] = []

    def flag(self, node: dict, code: str, message: str, fix: str) -> None:
        self.problems.append(LintProblem(str(node.get("id")), title(node), code, message, fix))

    # ------------------------------------------------------------------ one checkpoint
    def checkpoint(self, node: dict) -> None:
        data = node.get("data") or {}
        fields = parse_body(node)
        recall = fields is not None and "answer" in fields  # the "reviewed output" call of `hitl instrument`
        self._auth(node, data)
        self._retry(node, data)
        self._fail_branch(node, data)
        if fields is None:
            self.flag(node, "body-not-json", "the body is not a JSON object: ingest answers 400 and the call fails",
                      'set the body to JSON, e.g. {"workflow_run_id": "{{#sys.workflow_run_id#}}", "node_id": …, '
                      '"node_output": …} (README, The checkpoint node)')
            return
        self._fields(node, fields, recall)
        self._order(node, fields)
        self._read_timeout(node, data, fields)
        if not recall:
            self._held_timeout(node, fields)
            self._routing(node, fields)

    def _auth(self, node: dict, data: dict) -> None:
        auth = data.get("authorization") or {}
        config = auth.get("config") or {}
        if auth.get("type") != "api-key" or config.get("type") != "bearer" or not config.get("api_key"):
            self.flag(node, "no-bearer-token",
                      "no bearer API key: ingest answers 401 and the call ends in the fail branch",
                      "authorization: API-Key, type Bearer, the app's checkpoint_token — best as a secret environment "
                      "variable: {{#env.HITL_CHECKPOINT_TOKEN#}}")

    def _retry(self, node: dict, data: dict) -> None:
        retry = data.get("retry_config") or {}
        if not retry.get("retry_enabled") or int(retry.get("max_retries") or 0) < 1:
            self.flag(node, "retry-off", "retry is off: when ingest's hold window ends (503 + Retry-After) or ingest "
                      "restarts, the node fails at once instead of re-attaching to the checkpoint",
                      "turn retry on: 10 retries, 5000 ms apart")

    def _fail_branch(self, node: dict, data: dict) -> None:
        if data.get("error_strategy") != FAIL_BRANCH:
            self.flag(node, "no-fail-branch", "no fail branch: a call that fails after its retries fails the whole run",
                      "error handling: Fail branch, and connect it to a node that ends cleanly (notify someone)")
        elif not self.graph.out_edges(str(node["id"]), FAIL_BRANCH):
            self.flag(node, "fail-branch-unconnected", "the fail branch is on but connected to nothing: a failed call "
                      "ends the run without an output", "connect the fail branch to an End (or a notification)")

    def _fields(self, node: dict, fields: dict[str, tuple[Any, str | None]], recall: bool) -> None:
        required = ("workflow_run_id", "node_id") + (("round",) if recall else ("node_output",))
        for key in required:
            if key not in fields:
                self.flag(node, f"body-missing-{key.replace('_', '-')}", f"the body has no {key!r}",
                          f"add {_example(key)} to the body")
        run_ref = fields.get("workflow_run_id", (None, None))[1]
        if "workflow_run_id" in fields and run_ref != "{{#sys.workflow_run_id#}}":
            self.flag(node, "body-run-id", "workflow_run_id is not {{#sys.workflow_run_id#}}: the poller cannot "
                      "match the checkpoint to its run", 'use "workflow_run_id": "{{#sys.workflow_run_id#}}"')

    def _order(self, node: dict, fields: dict[str, tuple[Any, str | None]]) -> None:
        keys = list(fields)
        if "node_output" not in keys or not isinstance(fields["node_output"][0], str):
            return  # an object inserted unquoted renders as JSON: nothing to mangle
        before = [k for k in keys[:keys.index("node_output")] if k in STEERING]
        if before:
            self.flag(node, "text-after-fields", f"node_output comes after {', '.join(before)}: Dify inserts the text "
                      "raw and repairs the JSON, so a text holding JSON (or a stray quote and brace) can end the body "
                      "early and silently drop the fields after it, or replace them",
                      'put "node_output" (and "message") first in the body; the fields after it then win, or the '
                      "call is refused loudly")

    def _read_timeout(self, node: dict, data: dict, fields: dict[str, tuple[Any, str | None]]) -> None:
        read = _number((data.get("timeout") or {}).get("read")) or SERVER_MAX_READ_S
        if "read_timeout_s" not in fields:
            self.flag(node, "read-timeout-unknown", f"the body has no read_timeout_s: ingest holds the call only 55 s "
                      f"(HITL_HOLD_DEFAULT_S) although the node waits {read:.0f} s, so Dify retries every minute "
                      "and the run ends partial-succeeded", f'add "read_timeout_s": {read:.0f} to the body')
            return
        declared = _number(fields["read_timeout_s"][0])
        if declared is not None and declared > read:
            self.flag(node, "read-timeout-mismatch", f"read_timeout_s is {declared:.0f} but the node's read timeout is "
                      f"{read:.0f} s: Dify gives up before ingest answers, and the decision is lost to a closed socket",
                      f"make them equal: timeout read {declared:.0f} (at most {SERVER_MAX_READ_S}) or "
                      f'"read_timeout_s": {read:.0f}')

    def _held_timeout(self, node: dict, fields: dict[str, tuple[Any, str | None]]) -> None:
        if str(fields.get("mode", ("hold", None))[0]) == "detached":
            return
        timeout = _number(fields.get("timeout_s", (DEFAULT_TIMEOUT_S, None))[0])
        if timeout is not None and timeout >= RUN_LIMIT_S:
            self.flag(node, "held-timeout-too-long", f"timeout_s is {timeout:.0f} s but Dify ends every run at "
                      f"{RUN_LIMIT_S} s (WORKFLOW_MAX_EXECUTION_TIME): the run is stopped before the checkpoint "
                      "expires", f'keep timeout_s well under {RUN_LIMIT_S} (e.g. 900), or use "mode": "detached" '
                      "or Dify's Human Input node for longer waits")

    # ------------------------------------------------------------------ routing on the answer
    def answer_selectors(self, cp_id: str) -> set[tuple[str, str]]:
        """[cp, body], and loop variables an assigner over-writes with it (the revise loop)."""
        selectors = {(cp_id, "body")}
        for node in self.graph.nodes:
            if node_type(node) != "assigner":
                continue
            for item in (node.get("data") or {}).get("items") or []:
                value = item.get("value")
                reads_body = isinstance(value, list) and tuple(value[:2]) == (cp_id, "body")
                if item.get("input_type") == "variable" and reads_body:
                    target = item.get("variable_selector") or []
                    if len(target) >= 2:
                        selectors.add((str(target[0]), str(target[1])))
        return selectors

    def _conditions(self, selectors: set[tuple[str, str]]) -> Iterator[tuple[dict, dict]]:
        for node in self.graph.nodes:
            data = node.get("data") or {}
            groups = []
            if node_type(node) == "if-else":
                groups = [c.get("conditions") or [] for c in data.get("cases") or []]
            if node_type(node) == "loop":
                groups = [data.get("break_conditions") or []]
            for group in groups:
                for cond in group:
                    if tuple((cond.get("variable_selector") or [])[:2]) in selectors:
                        yield node, cond

    def _routing(self, node: dict, fields: dict[str, tuple[Any, str | None]]) -> None:
        selectors = self.answer_selectors(str(node["id"]))
        routed: set[str] = set()
        routers = 0
        for owner, cond in self._conditions(selectors):
            routers += node_type(owner) == "if-else"
            match = ACTION_IN_VALUE.search(str(cond.get("value") or ""))
            if match is None:
                continue
            if match.group(1) or match.group(2):
                self.flag(owner, "condition-never-matches", f"condition value {cond.get('value')!r} has spaces: ingest "
                          'answers compact JSON ({"action":"approve",…}), so it never matches',
                          f'compare with \'{{"action":"{match.group(3)}"\' (start with) '
                          f'or \'"action":"{match.group(3)}"\'')
                continue
            if node_type(owner) == "if-else":
                routed.add(match.group(3))
        if routers == 0:
            self.flag(node, "no-routing",
                      "no IF/ELSE reads the answer: every decision (even abort) takes the same path",
                      f"add an IF/ELSE on {node['id']}.body: start with '{{\"action\":\"approve\"' / edit / abort, "
                      "ELSE to a clean end")
            return
        for action in ROUTED:
            if action not in routed:
                self.flag(node, f"no-case-{action}", f"no IF/ELSE case matches {action}: it falls into ELSE",
                          f"add a case: {node['id']}.body start with '{{\"action\":\"{action}\"'")
        in_loop = parent_of(node) is not None and len(selectors) > 1
        one_round = _number(fields.get("max_rounds", (None, None))[0]) == 1
        if "revise" not in routed and not in_loop and not one_round:
            self.flag(node, "revise-unhandled", "a reviewer may answer revise, but nothing re-runs the node: the run "
                      "goes down ELSE", 'send "max_rounds": 1 (the decider then refuses revise), or put the node and '
                      "the checkpoint in a Loop (hitl instrument --revise)")

    # ------------------------------------------------------------------ Dify's own form
    def human_input(self, node: dict) -> None:
        data = node.get("data") or {}
        if not any(m.get("type") == "webapp" and m.get("enabled") for m in data.get("delivery_methods") or []):
            self.flag(node, "form-no-webapp", "no enabled web-app delivery: Dify's service API refuses to submit the "
                      "form (404), so no decision can reach it", "enable the Web app delivery method")
        for action in data.get("user_actions") or []:
            if not self.graph.out_edges(str(node["id"]), str(action.get("id"))):
                self.flag(node, "form-action-unconnected", f"action {action.get('id')!r} leads nowhere: choosing it "
                          "ends the run without an output", f"connect the {action.get('id')!r} handle")


def _example(key: str) -> str:
    return {"workflow_run_id": '"workflow_run_id": "{{#sys.workflow_run_id#}}"', "node_id": '"node_id": "<node id>"',
            "node_output": '"node_output": "{{#<node id>.<var>#}}"', "round": '"round": 1'}[key]


def lint(doc: Document) -> list[LintProblem]:
    graph = Graph.of(doc.graph)
    linter = Linter(graph)
    checks: dict[str, Callable[[dict], None]] = {"http-request": linter.checkpoint, "human-input": linter.human_input}
    for node in graph.nodes:
        kind = node_type(node)
        if kind == "http-request" and not is_checkpoint(node):
            continue
        if kind in checks:
            checks[kind](node)
    for problem in validate(graph):
        node = graph.node(problem.where) or {"id": problem.where, "data": {"title": "graph"}}
        linter.flag(node, "graph", problem.message, "fix the graph in Dify's editor (or the file) and export again")
    return linter.problems
