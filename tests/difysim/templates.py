"""Dify's `{{#node.var#}}` templates, as the HTTP Request node and conditions render them."""
from __future__ import annotations

import json
import re
from typing import Any

from json_repair import repair_json

from .variables import MISSING, VariablePool

# Dify's VARIABLE_PATTERN: a node id (no dashes) then 1..10 dotted names.
VARIABLE_PATTERN = re.compile(r"\{\{#([a-zA-Z0-9_]{1,50}(?:\.[a-zA-Z_][a-zA-Z0-9_]{0,29}){1,10})#\}\}")


def value_to_text(value: Any) -> str:
    """How a variable's value is inserted into text: strings raw, objects/arrays as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(template: str, pool: VariablePool) -> str:
    """Substitute every reference; an unresolved one renders as its bare selector text (`node.var`)."""
    if not isinstance(template, str):
        return value_to_text(template)

    def substitute(match: re.Match) -> str:
        selector = match.group(1).split(".")
        value = pool.get(selector)
        if value is MISSING:
            return match.group(1)
        return value_to_text(value)

    return VARIABLE_PATTERN.sub(substitute, template)


def render_json_body(template: str, pool: VariablePool) -> Any:
    """A JSON body: rendered text (strings inserted raw, NOT escaped), leniently repaired, then parsed.

    Quotes or newlines inside substituted text therefore get "repaired" exactly as real Dify does.
    """
    text = render(template, pool)
    if not text.strip():
        return None
    repaired = repair_json(text)
    return json.loads(repaired, strict=False)
