"""Checks run inputs against the app's Start form before a run starts.

Why locally: a streaming run whose inputs Dify rejects answers 200 with one ping and then hangs
(DIFY.md, fixture 12), so the error would otherwise surface only as a stalled stream. The checks
and their order follow Dify's blocking-mode 400 answers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DifyBadRequest
from .models import InputSpec

STRING_TYPES = ("text-input", "paragraph", "select")


def _refuse(message: str) -> DifyBadRequest:
    return DifyBadRequest(None, "invalid_inputs", message, endpoint="workflows_run")


def validate_inputs(specs: Mapping[str, InputSpec], inputs: Mapping[str, Any]) -> None:
    """Raise DifyBadRequest(code="invalid_inputs") naming the first bad input. Inputs the form does
    not know are left alone (Dify ignores them); input types we do not model (files, …) too."""
    if not isinstance(inputs, Mapping):
        raise _refuse("inputs must be an object")
    for name, spec in specs.items():
        kind = spec["type"]
        value = inputs.get(name)
        if value is None and spec.get("default") not in (None, ""):
            value = spec["default"]
        if value is None or (value == "" and spec["required"]):
            if spec["required"]:
                raise _refuse(f"{name} is required in input form")
            continue
        if kind in STRING_TYPES and not isinstance(value, str):
            raise _refuse(f"(type '{kind}') {name} in input form must be a string")
        if kind == "number" and not _is_number(value):
            raise _refuse(f"{name} in input form must be a valid number")
        if kind == "select" and spec["options"] and value not in spec["options"]:
            raise _refuse(f"{name} in input form must be one of the following: {spec['options']}")
        max_length = spec["max_length"]
        if kind in ("text-input", "paragraph") and max_length and len(value) > max_length:
            raise _refuse(f"{name} in input form must be less than {max_length} characters")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return not value.strip()  # Dify treats an empty number as absent
    return False
