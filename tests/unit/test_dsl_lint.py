"""`hitl lint`: a correct recipe passes; each broken one is flagged with its node's title and the fix.

Every broken recipe is the instrumented writer-llm export (which lints clean) with one thing changed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.dsl import document
from shared.dsl.graph import Graph
from shared.dsl.instrument import Options, instrument
from shared.dsl.lint import lint
from shared.dsl.recipe import RecipeSettings

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_17 = ROOT.parent / "shared" / "dify-fixtures" / "17-dsl-export-import"
CP, ROUTE = "hitl_cp_write_draft", "hitl_route_write_draft"


def good(revise: bool = False) -> document.Document:
    doc = document.load((FIXTURE_17 / "writer-llm.export.yml").read_text())
    instrument(doc, ["write_draft"], Options(RecipeSettings(url="http://ingest:8080/v1/checkpoints"), revise=revise))
    return doc


def data(doc: document.Document, node_id: str) -> dict:
    node = Graph.of(doc.graph).node(node_id)
    assert node is not None
    return node["data"]


def set_body(doc: document.Document, old: str, new: str, node_id: str = CP) -> None:
    item = data(doc, node_id)["body"]["data"][0]
    assert old in item["value"]
    item["value"] = item["value"].replace(old, new)


def codes(doc: document.Document) -> list[str]:
    return [p.code for p in lint(doc)]


@pytest.mark.parametrize("revise", [False, True])
def test_the_instrumented_recipe_passes(revise):
    assert lint(good(revise)) == []


def test_retry_off_is_flagged_with_the_title_and_the_fix():
    doc = good()
    data(doc, CP)["retry_config"]["retry_enabled"] = False
    [problem] = lint(doc)
    assert problem.code == "retry-off" and problem.title == "Review: Write draft"
    assert problem.render().startswith("Review: Write draft [hitl_cp_write_draft] retry-off: retry is off")
    assert "fix: turn retry on: 10 retries, 5000 ms apart" in problem.render()


def test_no_fail_branch_is_flagged():
    doc = good()
    del data(doc, CP)["error_strategy"]
    doc.edges[:] = [e for e in doc.edges if not (e["source"] == CP and e["sourceHandle"] == "fail-branch")]
    assert codes(doc) == ["no-fail-branch"]


def test_a_fail_branch_connected_to_nothing_is_flagged():
    doc = good()
    doc.edges[:] = [e for e in doc.edges if not (e["source"] == CP and e["sourceHandle"] == "fail-branch")]
    assert codes(doc) == ["fail-branch-unconnected"]


def test_a_read_timeout_shorter_than_read_timeout_s_is_flagged():
    doc = good()
    data(doc, CP)["timeout"]["read"] = 60
    [problem] = lint(doc)
    assert problem.code == "read-timeout-mismatch"
    assert "read_timeout_s is 600 but the node's read timeout is 60 s" in problem.message


def test_a_body_without_read_timeout_s_is_flagged():
    doc = good()
    set_body(doc, ', "read_timeout_s": 600', "")
    assert codes(doc) == ["read-timeout-unknown"]


def test_a_node_read_timeout_of_zero_means_the_server_maximum():
    doc = good()
    data(doc, CP)["timeout"]["read"] = 0
    assert codes(doc) == []


def test_a_held_timeout_past_dify_s_run_limit_is_flagged_and_detached_is_not():
    doc = good()
    set_body(doc, '"timeout_s": 900', '"timeout_s": 3600')
    [problem] = lint(doc)
    assert problem.code == "held-timeout-too-long" and "Dify ends every run at 1200 s" in problem.message
    set_body(doc, '"timeout_s": 3600', '"timeout_s": 3600, "mode": "detached"')
    assert codes(doc) == []


@pytest.mark.parametrize("field, code", [
    ('"workflow_run_id": "{{#sys.workflow_run_id#}}", ', "body-missing-workflow-run-id"),
    ('"node_id": "write_draft", ', "body-missing-node-id"),
    ('"node_output": "{{#write_draft.text#}}", ', "body-missing-node-output")])
def test_a_body_without_a_required_field_is_flagged(field, code):
    doc = good()
    set_body(doc, field, "")
    assert codes(doc) == [code]


def test_a_run_id_that_is_not_the_run_s_is_flagged():
    doc = good()
    set_body(doc, '"workflow_run_id": "{{#sys.workflow_run_id#}}"', '"workflow_run_id": "{{#sys.workflow_id#}}"')
    assert codes(doc) == ["body-run-id"]


def test_text_placed_after_the_steering_fields_is_flagged():
    doc = good()
    set_body(doc, '"node_output": "{{#write_draft.text#}}", ', "")
    set_body(doc, '"max_rounds": 1}', '"max_rounds": 1, "node_output": "{{#write_draft.text#}}"}')
    [problem] = lint(doc)
    assert problem.code == "text-after-fields" and problem.message.startswith(
        "node_output comes after workflow_run_id, node_id, round, read_timeout_s")


def test_a_body_that_is_not_json_is_flagged():
    doc = good()
    data(doc, CP)["body"] = {"data": [], "type": "none"}
    assert codes(doc) == ["body-not-json"]


def test_no_bearer_token_is_flagged():
    doc = good()
    data(doc, CP)["authorization"] = {"config": None, "type": "no-auth"}
    assert codes(doc) == ["no-bearer-token"]


@pytest.mark.parametrize("action", ["approve", "edit", "abort"])
def test_an_action_without_an_if_else_case_is_flagged(action):
    doc = good()
    for case in data(doc, ROUTE)["cases"]:
        case["conditions"] = [c for c in case["conditions"] if action not in c["value"]]
    doc.edges[:] = [e for e in doc.edges if not (action == "abort" and e["sourceHandle"] == "aborted")]
    data(doc, ROUTE)["cases"] = [c for c in data(doc, ROUTE)["cases"] if c["conditions"]]
    assert codes(doc) == [f"no-case-{action}"]


def test_no_if_else_on_the_answer_is_flagged():
    doc = good()
    for case in data(doc, ROUTE)["cases"]:
        for cond in case["conditions"]:
            cond["variable_selector"] = ["start", "topic"]
    assert codes(doc) == ["no-routing"]


def test_revise_with_nothing_to_re_run_the_node_is_flagged():
    doc = good()
    set_body(doc, ', "max_rounds": 1', "")
    [problem] = lint(doc)
    assert problem.code == "revise-unhandled" and "--revise" in problem.fix


def test_a_condition_with_spaces_never_matches_ingest_s_compact_answer():
    doc = good()
    data(doc, ROUTE)["cases"][1]["conditions"][0]["value"] = '{"action": "abort"'
    assert codes(doc) == ["condition-never-matches", "no-case-abort"]


def test_a_human_input_node_without_web_app_delivery_is_flagged():
    doc = document.load((FIXTURE_17 / "loop-human.export.yml").read_text())
    data(doc, "review")["delivery_methods"][0]["enabled"] = False
    assert codes(doc) == ["form-no-webapp"]


def test_a_form_action_that_leads_nowhere_is_flagged():
    doc = document.load((FIXTURE_17 / "loop-human.export.yml").read_text())
    doc.edges[:] = [e for e in doc.edges if e["sourceHandle"] != "abort"]
    assert codes(doc) == ["form-action-unconnected"]


def test_graph_problems_are_reported_too():
    doc = document.load((FIXTURE_17 / "import-bad-edge-to-missing-node.yml").read_text())
    [problem] = lint(doc)
    assert problem.code == "graph" and "ghost_node" in problem.message


def hitl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_the_cli_exits_1_on_the_readme_s_minimal_recipe_and_0_on_an_instrumented_app(tmp_path):
    bad = hitl("lint", str(FIXTURE_17 / "writer-llm.with-checkpoint.yml"))
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith("Human checkpoint [checkpoint] text-after-fields: node_output comes "
                                                 "after workflow_run_id, node_id:")
    assert "Human checkpoint [checkpoint] no-case-edit: no IF/ELSE case matches edit: it falls into ELSE" in bad.stdout
    assert "4 problem(s)" in bad.stderr
    out = tmp_path / "out.yml"
    made = hitl("instrument", str(FIXTURE_17 / "writer-llm.export.yml"), "--after", "Write draft", "-o", str(out))
    assert made.returncode == 0, made.stderr
    ok = hitl("lint", str(out))
    assert ok.returncode == 0 and "checkpoints follow the recipe" in ok.stdout


def test_the_cli_exits_2_on_a_file_it_cannot_read():
    out = hitl("lint", str(FIXTURE_17 / "import-bad-version-not-pep440.yml"))
    assert out.returncode == 2 and "DSL version banana is not one we know" in out.stderr


@pytest.mark.parametrize("command", ["instrument", "lint"])
def test_help_has_a_description_an_example_and_the_environment(command):
    out = hitl(command, "--help")
    assert out.returncode == 0
    assert "example" in out.stdout and "environment" in out.stdout and f"hitl {command} " in out.stdout
