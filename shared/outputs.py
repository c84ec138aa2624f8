"""What a node's output is, and how the text a reviewer edits becomes the new output: one rule for
every place that edits (the console's editor, `hitl decide … edit`), so that an edit sent from a
terminal reaches Dify exactly as the same edit made in the browser would.

- `json`: the output is a JSON value (object, array, number, …): the edit must be valid JSON and is
  sent as the value it parses to.
- `json-text`: the output is a string holding a JSON object or array (what an LLM node often
  returns): the edit must be valid JSON too, and is sent as the text, a string like the original.
- `text`: anything else: the edit is sent as it is typed, even when it happens to parse as JSON.
"""
from __future__ import annotations

import json
from typing import Any, Literal

OutputKind = Literal["json", "json-text", "text"]


class InvalidOutput(ValueError):
    """The edited text does not fit the node's output (not valid JSON where JSON is expected)."""


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def output_kind(value: Any) -> OutputKind:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[") and isinstance(_parsed(stripped), (dict, list)):
            return "json-text"
        return "text"
    return "json"


def edited_output(node_output: Any, text: str) -> Any:
    """The new output for an edit of `node_output` to `text`; InvalidOutput says what is wrong."""
    kind = output_kind(node_output)
    if kind == "text":
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the node's output is JSON, and this is not valid JSON: {exc.msg} "
                            f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidOutput("the output is nested too deeply") from None
    return text if kind == "json-text" else value
