"""Variable Assigner v2 operations of the simulator."""
from __future__ import annotations

import asyncio

import pytest

from tests.difysim.nodes.assigner import OperationError, apply_operation, run_assigner
from tests.difysim.nodes.base import NodeContext
from tests.difysim.variables import VariablePool


@pytest.mark.parametrize("current, operation, value, expected", [
    ("old", "over-write", "new", "new"),
    ("old", "set", "new", "new"),
    ("old", "clear", None, ""),
    (7, "clear", None, 0),
    ([1, 2], "clear", None, []),
    ({"a": 1}, "clear", None, {}),
    ([1], "append", 2, [1, 2]),
    ([1], "extend", [2, 3], [1, 2, 3]),
    (1, "+=", 1, 2),
    (5, "-=", 2, 3),
    (3, "*=", 4, 12),
    (9, "/=", 3, 3.0),
    ([1, 2, 3], "remove-first", None, [2, 3]),
    ([1, 2, 3], "remove-last", None, [1, 2]),
    ([], "remove-last", None, []),
])
def test_operation(current, operation, value, expected):
    assert apply_operation(current, operation, value) == expected


@pytest.mark.parametrize("current, operation, value", [
    (1, "/=", 0), ("text", "+=", 1), ("text", "append", 1), ([1], "extend", 2), ("x", "explode", None)])
def test_invalid_operation_is_rejected(current, operation, value):
    with pytest.raises(OperationError):
        apply_operation(current, operation, value)


def test_assigner_updates_loop_variables_and_reports_them_like_dify():
    pool = VariablePool()
    pool.set_outputs("loop", {"last": "none", "round": 0})
    pool.set_outputs("cp", {"body": '{"action":"revise"}'})
    node = {"id": "assign", "data": {"type": "assigner", "title": "store answer", "version": "2", "items": [
        {"variable_selector": ["loop", "last"], "input_type": "variable", "operation": "over-write",
         "value": ["cp", "body"]},
        {"variable_selector": ["loop", "round"], "input_type": "constant", "operation": "+=", "value": 1}]}}
    result = asyncio.run(run_assigner(NodeContext(node, pool, None, None, None)))  # type: ignore[arg-type]
    assert not result.failed
    assert pool.get(["loop", "last"]) == '{"action":"revise"}' and pool.get(["loop", "round"]) == 1
    assert result.process_data["round"] == 1
    assert result.process_data["__updated_variables"][1] == {"name": "round", "selector": ["loop", "round"],
                                                             "value_type": "integer", "new_value": 1}
    assert result.inputs["retry_config"] == {"max_retries": 0, "retry_interval": 0, "retry_enabled": False}
    assert result.outputs == {}


def test_assigner_of_version_one_is_refused():
    node = {"id": "assign", "data": {"type": "assigner", "items": []}}
    result = asyncio.run(run_assigner(NodeContext(node, VariablePool(), None, None, None)))  # type: ignore[arg-type]
    assert result.failed
