"""What each Dify node type outputs: the main variable a reviewer looks at, and all of them (step mode).

A variable is `json` when Dify renders it into a template as JSON (numbers, objects, arrays): the
checkpoint body then inserts it unquoted; text is inserted inside quotes (Dify inserts it raw and
repairs the JSON, DIFY.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import node_type

# The main output of node types with a fixed one (Dify's node docs / graphon node outputs).
FIXED_MAIN = {
    "llm": "text",
    "template-transform": "output",
    "knowledge-retrieval": "result",
    "http-request": "body",
    "tool": "text",
    "agent": "text",
    "question-classifier": "class_name",
    "variable-aggregator": "output",
    "document-extractor": "text",
    "list-operator": "result",
    "iteration": "output",
}
JSON_FIXED = {("knowledge-retrieval", "result"), ("list-operator", "result"), ("iteration", "output"),
              ("http-request", "status_code")}
NO_OUTPUT = {"end", "answer", "assigner", "if-else", "loop-start", "iteration-start", "loop-end"}


@dataclass(frozen=True)
class Var:
    name: str
    json: bool  # rendered as JSON (unquoted in the body), not text

    def template(self, node_id: str) -> str:
        ref = "{{#" + node_id + "." + self.name + "#}}"
        return ref if self.json else f'"{ref}"'


def _typed(name: str, kind: str | None) -> Var:
    text_kinds = {None, "", "string", "text-input", "paragraph", "select", "secret", "text"}
    return Var(name, str(kind) not in text_kinds if kind is not None else False)


def all_outputs(node: dict) -> list[Var]:
    """Every output variable we can name for this node (empty for nodes without outputs)."""
    kind, data = node_type(node), node.get("data") or {}
    if kind in NO_OUTPUT:
        return []
    if kind == "start":
        return [_typed(str(v.get("variable")), v.get("type")) for v in data.get("variables") or []]
    if kind == "code":
        return [_typed(str(name), (spec or {}).get("type")) for name, spec in (data.get("outputs") or {}).items()]
    if kind == "parameter-extractor":
        return [_typed(str(p.get("name")), p.get("type")) for p in data.get("parameters") or []]
    if kind == "loop":
        return [_typed(str(v.get("label")), v.get("var_type")) for v in data.get("loop_variables") or []]
    if kind == "human-input":
        inputs = [Var(str(i.get("output_variable_name")), False) for i in data.get("inputs") or []]
        return inputs + [Var("__action_id", False)]
    if kind == "http-request":
        return [Var("body", False), Var("status_code", True)]
    if kind == "variable-aggregator":
        return [_typed("output", data.get("output_type"))]
    if kind in FIXED_MAIN:
        name = FIXED_MAIN[kind]
        return [Var(name, (kind, name) in JSON_FIXED)]
    return []


def main_output(node: dict, override: str | None = None) -> Var:
    """The variable a reviewer reviews: by node type, or the one named with --output-var."""
    outputs = all_outputs(node)
    if override:
        known = next((v for v in outputs if v.name == override), None)
        return known or Var(override, False)
    if not outputs:
        raise ValueError(f"node {node.get('id')!r} ({node_type(node)}) has no output to review; "
                         "name one with --output-var")
    kind = node_type(node)
    if kind in FIXED_MAIN:
        return next(v for v in outputs if v.name == FIXED_MAIN[kind])
    return outputs[0]
