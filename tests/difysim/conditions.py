"""IF/ELSE comparison operators and condition groups (also used by the Loop's break conditions)."""
from __future__ import annotations

from typing import Any

from .templates import render
from .variables import MISSING, VariablePool


def to_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _numeric(compare):
    def check(actual: Any, expected: Any) -> bool:
        a, e = to_number(actual), to_number(expected)
        if a is None or e is None:
            return False
        return compare(a, e)

    return check


def _contains(actual: Any, expected: Any) -> bool:
    if actual is None or actual is MISSING:
        return False
    if isinstance(actual, str):
        return str(expected) in actual
    if isinstance(actual, (list, tuple)):
        return expected in actual or str(expected) in [str(a) for a in actual]
    return False


def _is_empty(actual: Any) -> bool:
    return actual is None or actual is MISSING or actual == "" or actual == [] or actual == {}


def _as_list(expected: Any) -> list:
    return expected if isinstance(expected, list) else [expected]


def _is(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool):
        return str(actual).lower() == str(expected).lower()
    return actual is not None and actual is not MISSING and str(actual) == str(expected)


OPERATORS = {
    "contains": _contains,
    "not contains": lambda a, e: not _contains(a, e),
    "start with": lambda a, e: isinstance(a, str) and a.startswith(str(e)),
    "end with": lambda a, e: isinstance(a, str) and a.endswith(str(e)),
    "is": _is,
    "is not": lambda a, e: not _is(a, e),
    "empty": lambda a, e: _is_empty(a),
    "not empty": lambda a, e: not _is_empty(a),
    "null": lambda a, e: a is None or a is MISSING,
    "not null": lambda a, e: not (a is None or a is MISSING),
    "exists": lambda a, e: not (a is None or a is MISSING),
    "not exists": lambda a, e: a is None or a is MISSING,
    "in": lambda a, e: a in _as_list(e),
    "not in": lambda a, e: a not in _as_list(e),
    "all of": lambda a, e: isinstance(a, list) and all(x in a for x in _as_list(e)),
    "=": _numeric(lambda a, e: a == e),
    "≠": _numeric(lambda a, e: a != e),
    ">": _numeric(lambda a, e: a > e),
    "<": _numeric(lambda a, e: a < e),
    "≥": _numeric(lambda a, e: a >= e),
    "≤": _numeric(lambda a, e: a <= e),
}
# ASCII spellings seen in older DSL files.
OPERATORS.update({"!=": OPERATORS["≠"], ">=": OPERATORS["≥"], "<=": OPERATORS["≤"]})


def compare(operator: str, actual: Any, expected: Any) -> bool:
    check = OPERATORS.get(operator)
    if check is None:
        raise ValueError(f"Unsupported comparison operator: {operator}")
    return bool(check(actual, expected))


def evaluate_group(conditions: list[dict], logical_operator: str, pool: VariablePool) -> tuple[bool, list, list]:
    """Evaluate one case. Returns (final, per-condition results, [{actual_value, expected_value, op}])."""
    results, logged = [], []
    for cond in conditions:
        actual = pool.get(cond.get("variable_selector") or [])
        expected = cond.get("value")
        if isinstance(expected, str):
            expected = render(expected, pool)  # an expected value may itself reference variables
        operator = cond.get("comparison_operator", "")
        results.append(compare(operator, actual, expected))
        logged.append({"actual_value": None if actual is MISSING else actual,
                       "expected_value": expected, "comparison_operator": operator})
    final = any(results) if logical_operator == "or" else all(results)
    return final, results, logged


def condition_model(cond: dict) -> dict:
    """The condition as Dify dumps it in process_data (its pydantic model, not the raw DSL dict)."""
    return {"variable_selector": cond.get("variable_selector"), "comparison_operator": cond.get("comparison_operator"),
            "value": cond.get("value"), "sub_variable_condition": cond.get("sub_variable_condition")}
