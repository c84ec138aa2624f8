"""IF/ELSE comparison operators and condition groups of the simulator."""
from __future__ import annotations

import pytest

from tests.difysim.conditions import compare, evaluate_group
from tests.difysim.variables import VariablePool


@pytest.mark.parametrize("operator, actual, expected, result", [
    ("contains", '{"action":"approve"}', '"action":"approve"', True),
    ("contains", '{"action":"revise"}', '"action":"approve"', False),
    ("contains", ["a", "b"], "b", True),
    ("contains", None, "x", False),
    ("not contains", '{"action":"revise"}', "approve", True),
    ("not contains", None, "x", True),
    ("start with", "approve-now", "approve", True),
    ("end with", "approve-now", "now", True),
    ("end with", "approve-now", "approve", False),
    ("is", "approve", "approve", True),
    ("is", "approved", "approve", False),
    ("is not", "revise", "approve", True),
    ("empty", "", None, True),
    ("empty", None, None, True),
    ("empty", [], None, True),
    ("empty", "x", None, False),
    ("not empty", "x", None, True),
    ("=", 3, "3", True),
    ("=", "3", "3.0", True),
    ("≠", 3, "4", True),
    (">", 5, "4", True),
    ("<", 5, "4", False),
    ("≥", 4, "4", True),
    ("≤", 4.5, "4", False),
    (">", None, "4", False),
])
def test_operator(operator, actual, expected, result):
    assert compare(operator, actual, expected) is result


def test_unknown_operator_is_an_error():
    with pytest.raises(ValueError):
        compare("resembles", "a", "b")


def _pool() -> VariablePool:
    pool = VariablePool()
    pool.set_outputs("cp", {"body": '{"action":"approve"}', "status_code": 200})
    return pool


def test_and_group_needs_every_condition():
    conditions = [{"variable_selector": ["cp", "body"], "comparison_operator": "contains", "value": "approve"},
                  {"variable_selector": ["cp", "status_code"], "comparison_operator": "=", "value": "201"}]
    final, results, logged = evaluate_group(conditions, "and", _pool())
    assert (final, results) == (False, [True, False])
    assert logged[0] == {"actual_value": '{"action":"approve"}', "expected_value": "approve",
                         "comparison_operator": "contains"}


def test_or_group_needs_one_condition():
    conditions = [{"variable_selector": ["cp", "body"], "comparison_operator": "contains", "value": "nope"},
                  {"variable_selector": ["cp", "status_code"], "comparison_operator": "=", "value": "200"}]
    assert evaluate_group(conditions, "or", _pool())[0] is True


def test_expected_value_may_reference_a_variable():
    pool = _pool()
    pool.set_outputs("start", {"want": "approve"})
    conditions = [{"variable_selector": ["cp", "body"], "comparison_operator": "contains", "value": "{{#start.want#}}"}]
    assert evaluate_group(conditions, "and", pool)[0] is True
