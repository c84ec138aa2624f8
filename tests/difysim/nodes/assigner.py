"""Variable Assigner, version "2": a list of operations on loop (or other pool) variables."""
from __future__ import annotations

import copy
from typing import Any

from ..variables import MISSING
from .base import NodeContext, NodeResult, failure

ERROR_TYPE = "VariableOperatorNodeError"
DEFAULT_RETRY = {"max_retries": 0, "retry_interval": 0, "retry_enabled": False}


class OperationError(Exception):
    pass


def _empty_like(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return 0
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return ""


def _arith(current: Any, operand: Any, operation: str) -> Any:
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise OperationError(f"Operation {operation} needs a number variable")
    if isinstance(operand, str):
        operand = float(operand) if "." in operand else int(operand)
    if isinstance(operand, bool) or not isinstance(operand, (int, float)):
        raise OperationError(f"Operation {operation} needs a number value")
    if operation == "+=":
        return current + operand
    if operation == "-=":
        return current - operand
    if operation == "*=":
        return current * operand
    if operand == 0:
        raise OperationError("Division by zero")
    return current / operand


def apply_operation(current: Any, operation: str, value: Any) -> Any:
    """The new value of a variable after one v2 operation."""
    if operation in ("over-write", "set"):
        return copy.deepcopy(value)
    if operation == "clear":
        return _empty_like(current)
    if operation in ("+=", "-=", "*=", "/="):
        return _arith(current, value, operation)
    if operation in ("append", "extend", "remove-first", "remove-last"):
        if not isinstance(current, list):
            raise OperationError(f"Operation {operation} needs an array variable")
        items = list(current)
        if operation == "append":
            items.append(copy.deepcopy(value))
        elif operation == "extend":
            if not isinstance(value, list):
                raise OperationError("Operation extend needs an array value")
            items.extend(copy.deepcopy(value))
        elif items:
            items.pop(0 if operation == "remove-first" else -1)
        return items
    raise OperationError(f"Unsupported operation: {operation}")


def value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        kinds = {value_type(v) for v in value}
        if len(kinds) != 1:
            return "array[any]"
        only = next(iter(kinds))
        inner = {"integer": "number", "float": "number"}.get(only, only)
        return f"array[{inner}]"
    return "string" if value is not None else "none"


def node_data_dump(data: dict) -> dict:
    """The node's config as Dify dumps it for node_finished.inputs (defaults filled in)."""
    dumped = {"type": data.get("type"), "title": data.get("title", ""), "desc": data.get("desc", ""),
              "version": data.get("version", "1"), "error_strategy": data.get("error_strategy"),
              "default_value": data.get("default_value"), "retry_config": data.get("retry_config") or DEFAULT_RETRY,
              "items": data.get("items") or []}
    for key, val in data.items():
        if key not in dumped and key not in ("selected",):
            dumped[key] = val
    return dumped


async def run_assigner(ctx: NodeContext) -> NodeResult:
    data = ctx.data
    inputs = node_data_dump(data)
    if str(data.get("version", "1")) != "2":
        return failure("Only the Variable Assigner version \"2\" is simulated", ERROR_TYPE, inputs=inputs)
    process_data: dict[str, Any] = {}
    updated = []
    for item in data.get("items") or []:
        target = item.get("variable_selector") or []
        current = ctx.pool.get(target)
        if current is MISSING:
            return failure(f"Variable {'.'.join(target)} not found", ERROR_TYPE, inputs=inputs)
        operation = item.get("operation", "over-write")
        raw = item.get("value")
        value = None
        if operation not in ("clear", "remove-first", "remove-last"):
            value = ctx.pool.get(raw or []) if item.get("input_type") == "variable" else raw
            if value is MISSING:
                return failure(f"Variable {'.'.join(raw or [])} not found", ERROR_TYPE, inputs=inputs)
        try:
            new_value = apply_operation(current, operation, value)
        except (OperationError, ValueError) as exc:
            return failure(str(exc), ERROR_TYPE, inputs=inputs)
        ctx.pool.set(target, new_value)
        process_data[target[-1]] = new_value
        updated.append({"name": target[-1], "selector": list(target), "value_type": value_type(new_value),
                        "new_value": new_value})
    process_data["__updated_variables"] = updated
    return NodeResult(inputs=inputs, process_data=process_data, outputs={})
