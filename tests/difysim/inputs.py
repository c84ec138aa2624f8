"""The Start node's input form: validation of run inputs and the /v1/parameters shape."""
from __future__ import annotations

from typing import Any

STRING_TYPES = ("text-input", "paragraph", "select")


class InputError(ValueError):
    """An input that Dify rejects with 400 (blocking) or a silent hang (streaming)."""


def validate_inputs(variables: list[dict], inputs: dict) -> dict:
    """Dify's checks and messages, in Dify's order; returns the inputs the run starts with."""
    accepted: dict[str, Any] = {}
    for var in variables:
        name, kind = var.get("variable"), var.get("type", "text-input")
        value = inputs.get(name)
        if value is None and var.get("default") not in (None, ""):
            value = var["default"]
        if value is None or (value == "" and var.get("required")):
            if var.get("required"):
                raise InputError(f"{name} is required in input form")
            # Dify keeps every Start variable: one left out is null in the run's inputs, and renders
            # as "" in templates (seen side by side with real Dify).
            accepted[name] = None
            continue
        if kind in STRING_TYPES and not isinstance(value, str):
            raise InputError(f"(type '{kind}') {name} in input form must be a string")
        if kind == "number":
            value = _number(name, value)
            if value is None:
                accepted[name] = None
                continue
        if kind == "select" and value not in (var.get("options") or []):
            raise InputError(f"{name} in input form must be one of the following: {var.get('options') or []}")
        max_length = var.get("max_length")
        if kind in ("text-input", "paragraph") and max_length and len(value) > int(max_length):
            raise InputError(f"{name} in input form must be less than {max_length} characters")
        accepted[name] = value.replace("\x00", "") if isinstance(value, str) else value
    return accepted


def _number(name: str, value: Any) -> int | float | None:
    if isinstance(value, bool):
        raise InputError(f"{name} in input form must be a valid number")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            raise InputError(f"{name} in input form must be a valid number") from None
    raise InputError(f"{name} in input form must be a valid number")


def user_input_form(variables: list[dict]) -> list[dict]:
    """Start variables as Dify's `user_input_form`: [{"text-input": {label, variable, required, ...}}]."""
    form = []
    for var in variables:
        kind = var.get("type", "text-input")
        entry = {"label": var.get("label", var.get("variable")), "variable": var.get("variable"),
                 "required": bool(var.get("required")), "max_length": var.get("max_length"),
                 "default": var.get("default", "")}
        if kind == "select":
            entry["options"] = var.get("options") or []
        form.append({kind: entry})
    return form
