"""Edits inside nodes we keep: references moved to the reviewed output, feedback put into a node's input.

Both work in place on the file's containers, so only the strings and selectors that change are
rewritten (the rest of the node keeps its exact text).
"""
from __future__ import annotations

import re
from typing import Any

from .graph import node_type

FEEDBACK_VAR = "hitl_feedback"
REVISABLE = ("llm", "template-transform", "http-request")


def rewire(value: Any, old: tuple[str, str], new: tuple[str, str]) -> int:
    """Point every `{{#old.var…#}}` and selector [old, var, …] in `value` at `new`; returns how many."""
    pattern = re.compile(r"\{\{#" + re.escape(old[0]) + r"\." + re.escape(old[1]) + r"(?=[.#])")
    replacement = "{{#" + new[0] + "." + new[1]
    count = 0

    def walk(item: Any) -> Any:
        nonlocal count
        if isinstance(item, str):
            text, n = pattern.subn(replacement, item)
            count += n
            return text if n else item
        if isinstance(item, list):
            if len(item) >= 2 and all(isinstance(v, str) for v in item) and (item[0], item[1]) == old:
                item[0], item[1] = new
                count += 1
                return item
            for i, sub in enumerate(item):
                changed = walk(sub)
                if changed is not sub:
                    item[i] = changed
            return item
        if isinstance(item, dict):
            for key in list(item):
                sub = item[key]
                changed = walk(sub)
                if changed is not sub:
                    item[key] = changed
        return item

    walk(value)
    return count


def add_feedback_input(node: dict, loop_id: str) -> None:
    """Let a node read the reviewer's feedback (loop variable `feedback`) when it runs again.

    Empty on the first round. An LLM prompt gets it appended to its last user message, a template
    gets a variable and an `{% if %}` tail, an HTTP node a query parameter. Other node types have no
    input we could extend without changing their code: refused with the reason."""
    kind, data = node_type(node), node["data"]
    ref = "{{#" + loop_id + ".feedback#}}"
    if kind == "llm":
        note = "\n\nReviewer feedback on your previous answer (empty on the first round): " + ref
        prompt = data.get("prompt_template")
        if isinstance(prompt, dict):  # completion mode: one text
            prompt["text"] = str(prompt.get("text") or "") + note
            return
        users = [m for m in prompt or [] if m.get("role") == "user"]
        if users:
            users[-1]["text"] = str(users[-1].get("text") or "") + note
        else:
            prompt.append({"id": f"{node['id']}-hitl-feedback", "role": "user", "text": note.strip()})
        return
    if kind == "template-transform":
        variables = data.get("variables")
        if variables is None:
            data["variables"] = variables = []
        variables.append({"value_selector": [loop_id, "feedback"], "variable": FEEDBACK_VAR})
        # Without its double quotes: the output goes into the next checkpoint body as raw text, and
        # Dify's JSON repair would read quoted keys in it (today's feedback is a JSON decision) as
        # keys of the body itself.
        data["template"] = (str(data.get("template") or "")
                            + "{% if " + FEEDBACK_VAR + " %}\n\nReviewer feedback: {{ " + FEEDBACK_VAR
                            + " | replace('\"', '') }}{% endif %}")
        return
    if kind == "http-request":
        params = str(data.get("params") or "")
        data["params"] = (params + "\n" if params.strip() else "") + f"{FEEDBACK_VAR}:{ref}"
        return
    raise ValueError(f"--revise cannot give feedback to a {kind} node ({node['id']}): supported are "
                     f"{', '.join(REVISABLE)}")
