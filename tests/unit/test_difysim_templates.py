"""Variable rendering of the simulated HTTP Request node (DIFY.md: raw insertion + json-repair)."""
from __future__ import annotations

from tests.difysim.templates import render, render_json_body
from tests.difysim.variables import VariablePool


def make_pool() -> VariablePool:
    pool = VariablePool(system={"workflow_run_id": "run-1", "app_id": "app-1", "user_id": "u-1"})
    pool.set_outputs("start", {"topic": "hello", "count": 3})
    pool.set_outputs("draft", {"output": 'He said "hi"\nthen left', "obj": {"a": [1, 2]}})
    return pool


def test_sys_and_node_variables_are_substituted():
    assert render("{{#sys.workflow_run_id#}}/{{#sys.app_id#}}/{{#start.topic#}}/{{#start.count#}}",
                  make_pool()) == "run-1/app-1/hello/3"


def test_unresolved_reference_renders_as_its_bare_selector():
    assert render("x={{#nowhere.value#}}", make_pool()) == "x=nowhere.value"


def test_dashed_node_ids_are_not_references():
    assert render("{{#no-dash.value#}}", make_pool()) == "{{#no-dash.value#}}"


def test_object_variables_render_as_json():
    assert render("{{#draft.obj#}}", make_pool()) == '{"a": [1, 2]}'


def test_strings_are_inserted_raw_then_the_json_is_repaired():
    body = render_json_body('{"run": "{{#sys.workflow_run_id#}}", "text": "{{#draft.output#}}"}', make_pool())
    # The quotes and the newline were inserted unescaped; json-repair recovers this case.
    assert body == {"run": "run-1", "text": 'He said "hi"\nthen left'}


def test_inserted_text_that_looks_like_json_is_mangled_into_extra_keys():
    pool = make_pool()
    pool.set_outputs("draft", {"output": 'a", "injected": "b'})
    assert render_json_body('{"text": "{{#draft.output#}}"}', pool) == {"text": "a", "injected": "b"}


def test_object_variable_in_a_json_body_becomes_a_nested_object():
    assert render_json_body('{"node_output": {{#draft.obj#}}}', make_pool()) == {"node_output": {"a": [1, 2]}}


def test_unquoted_number_reference_stays_a_number():
    assert render_json_body('{"round_before": {{#start.count#}}}', make_pool()) == {"round_before": 3}


def test_broken_template_json_is_repaired():
    assert render_json_body('{"a": 1, "b": "x"', make_pool()) == {"a": 1, "b": "x"}
