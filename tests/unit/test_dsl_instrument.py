"""`hitl instrument` on every recorded export of fixture 17 (plain, --revise, --human-input, --step):
the result validates, lints clean, keeps what it did not touch, and has the recipe's shapes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.dsl import document
from shared.dsl.document import DslError, to_plain
from shared.dsl.graph import Graph, node_type, validate
from shared.dsl.instrument import Options, instrument
from shared.dsl.lint import lint, parse_body
from shared.dsl.recipe import RecipeSettings
from shared.dsl.step import step

FIXTURE_17 = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "17-dsl-export-import"
OWN = Path(__file__).resolve().parents[1] / "fixtures" / "dsl"
URL = "http://ingest.internal:8080/v1/checkpoints"
# (export, reviewed node, its main output, downstream nodes that read it)
CASES = [("writer-llm.export.yml", "write_draft", "text", {"polish"}),
         ("router.export.yml", "support", "body", {"end_support"}),
         ("loop-human.export.yml", "draft", "body", {"review"})]
MODES = ["plain", "revise", "human-input", "step"]


def load(name: str) -> document.Document:
    path = OWN / name if (OWN / name).exists() else FIXTURE_17 / name
    return document.load(path.read_text(encoding="utf-8"))


def options(**kw) -> Options:
    return Options(RecipeSettings(url=URL, assignees=["alice"]), token="cp-secret", **kw)


def run(name: str, after: str, mode: str, **kw) -> document.Document:
    doc = load(name)
    if mode == "step":
        step(doc, None, options(**kw))
    else:
        instrument(doc, [after], options(revise=mode == "revise", human_input=mode == "human-input", **kw))
    return doc


def nodes(doc: document.Document) -> dict[str, dict]:
    return {n["id"]: to_plain(n) for n in doc.nodes}


def body(node: dict) -> dict:
    return json.loads(re.sub(r"\{\{#[^#]+#\}\}", "0", node["data"]["body"]["data"][0]["value"]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, after, var, readers", CASES)
def test_the_result_validates_lints_clean_and_loads_again_unchanged(name, after, var, readers, mode):
    doc = run(name, after, mode)
    assert validate(Graph.of(doc.graph)) == []
    text = doc.dump()
    again = document.load(text)
    assert again.dump() == text
    assert [p.render() for p in lint(again)] == []
    assert not [n for n in doc.nodes if node_type(n) == "code"]  # the recipe needs no sandbox


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, after, var, readers", CASES)
def test_what_was_not_touched_is_kept(name, after, var, readers, mode):
    before_text = (FIXTURE_17 / name).read_text()
    doc = run(name, after, mode)
    text = doc.dump()
    head = before_text.split("workflow:\n")[0]
    assert text.startswith(head)  # app, dependencies, kind, version: same text
    old, new = load(name), nodes(doc)
    assert to_plain(doc.workflow["features"]) == to_plain(old.workflow["features"])
    reviewed_x = next(n["position"]["x"] for n in old.nodes if n["id"] == after)
    touched = {after} if mode == "revise" else set()
    touched |= readers if mode != "step" else set()
    for original in map(to_plain, old.nodes):
        kept = new[original["id"]]
        if original["id"] in touched:
            continue
        moved = dict(kept, position=original["position"])
        assert moved == original, original["id"]
        assert kept["position"]["y"] == original["position"]["y"]
        if original["position"]["x"] <= reviewed_x:
            assert kept["position"] == original["position"]
        else:
            assert kept["position"]["x"] > original["position"]["x"]  # made room to its left
    leaving_or_entering = {after} if mode in ("revise", "plain", "human-input") else set(n["id"] for n in old.nodes)
    new_edges = [to_plain(e) for e in doc.edges]
    for edge in map(to_plain, old.edges):
        if edge["source"] in leaving_or_entering or (mode == "revise" and edge["target"] == after):
            continue
        assert edge in new_edges


def yaml_items(text: str, section: str) -> dict[str, str]:
    """id -> the exact text of each item of workflow.graph.<section> in a Dify-style export."""
    lines = []
    for line in text.split(f"    {section}:\n", 1)[1].splitlines(keepends=True):
        if not line.startswith(("    - ", "      ")) and line.strip():  # blank lines sit inside folded text
            break
        lines.append(line)
    items: list[list[str]] = []
    for line in lines:
        if line.startswith("    - "):
            items.append([])
        items[-1].append(line)
    blocks = ["".join(item) for item in items]
    return {re.search(r"^      id: (.+)$", b, re.M).group(1): b for b in blocks}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, after, var, readers", CASES)
def test_untouched_nodes_and_edges_keep_their_exact_yaml_text(name, after, var, readers, mode):
    before = (FIXTURE_17 / name).read_text()
    after_text = run(name, after, mode).dump()
    old_nodes, new_nodes = yaml_items(before, "nodes"), yaml_items(after_text, "nodes")
    reviewed_x = next(n["position"]["x"] for n in load(name).nodes if n["id"] == after)
    left = {n["id"] for n in load(name).nodes if n["position"]["x"] < reviewed_x}
    assert left and all(new_nodes[nid] == old_nodes[nid] for nid in left)
    if mode != "revise":
        assert new_nodes[after] == old_nodes[after]
    old_edges, new_edges = yaml_items(before, "edges"), yaml_items(after_text, "edges")
    moved = {"write_draft", "polish", "billing", "support", "draft"} if mode == "step" else {after}  # edges leaving
    kept = {eid for eid, block in old_edges.items() if not any(f"source: {m}\n" in block for m in moved)
            and not (mode == "revise" and f"target: {after}\n" in block)}  # the loop takes the node's place
    assert kept and all(new_edges[eid] == old_edges[eid] for eid in kept)


@pytest.mark.parametrize("name, after, var, readers", CASES)
def test_plain_review_follows_the_recipe_and_moves_readers_to_the_reviewed_output(name, after, var, readers):
    doc = run(name, after, "plain")
    new = nodes(doc)
    cp = new[f"hitl_cp_{after}"]["data"]
    assert cp["url"] == URL and cp["method"] == "post"
    assert cp["authorization"] == {"config": {"api_key": "{{#env.HITL_CHECKPOINT_TOKEN#}}", "type": "bearer"},
                                   "type": "api-key"}
    assert cp["timeout"]["read"] == 600 and cp["error_strategy"] == "fail-branch"
    assert cp["retry_config"] == {"max_retries": 10, "retry_enabled": True, "retry_interval": 5000}
    fields = parse_body(new[f"hitl_cp_{after}"])
    assert fields["node_output"][1] == "{{#" + after + "." + var + "#}}"
    assert fields["workflow_run_id"][1] == "{{#sys.workflow_run_id#}}"
    assert {k: v[0] for k, v in fields.items() if v[1] is None} == {
        "node_id": after, "round": 1, "message": f"Review {new[after]['data']['title']}", "read_timeout_s": 600,
        "timeout_s": 900, "on_timeout": "abort", "assignees": ["alice"], "max_rounds": 1}
    route = new[f"hitl_route_{after}"]["data"]
    assert [(c["case_id"], [x["value"] for x in c["conditions"]]) for c in route["cases"]] == [
        ("approved", ['{"action":"approve"', '{"action":"edit"']), ("aborted", ['{"action":"abort"'])]
    handles = {(e["source"], e["sourceHandle"], e["target"]) for e in map(to_plain, doc.edges)}
    out, fail, abort = f"hitl_out_{after}", f"hitl_fail_{after}", f"hitl_abort_{after}"
    assert {(after, "source", f"hitl_cp_{after}"), (f"hitl_cp_{after}", "fail-branch", fail),
            (f"hitl_route_{after}", "approved", out), (f"hitl_route_{after}", "aborted", abort),
            (f"hitl_route_{after}", "false", fail), (out, "fail-branch", fail)} <= handles
    assert json.loads(new[out]["data"]["body"]["data"][0]["value"].replace("{{#sys.workflow_run_id#}}", "r")
                      .replace("{{#sys.app_id#}}", "a").replace("{{#sys.workflow_id#}}", "w")
                      .replace("{{#sys.user_id#}}", "u"))["answer"] == "text"
    for reader in readers:
        text = json.dumps(new[reader]["data"])
        assert "{{#" + f"{after}.{var}" not in text and f'["{after}", "{var}"]' not in text
        assert f"{out}.body" in text or f'"{out}", "body"' in text
    env = to_plain(doc.workflow["environment_variables"])
    assert [(v["name"], v["value_type"], v["value"]) for v in env] == [("HITL_CHECKPOINT_TOKEN", "secret", "cp-secret")]


@pytest.mark.parametrize("name, after, var, readers", CASES)
def test_revise_puts_the_node_in_a_loop_that_feeds_the_feedback_back(name, after, var, readers):
    doc = run(name, after, "revise")
    new = nodes(doc)
    loop_id = f"hitl_loop_{after}"
    loop = new[loop_id]["data"]
    assert loop["loop_count"] == 5 and loop["start_node_id"] == f"{loop_id}start"
    assert [v["label"] for v in loop["loop_variables"]] == ["decision", "round", "feedback", "output"]
    assert {c["value"] for c in loop["break_conditions"]} == {
        '{"action":"approve"', '{"action":"edit"', '{"action":"abort"', '{"action":"failed"'}
    children = {nid for nid, n in new.items() if n.get("parentId") == loop_id}
    assert children == {f"{loop_id}start", after, f"hitl_cp_{after}", f"hitl_out_{after}", f"hitl_remember_{after}",
                        f"hitl_failed_{after}"}
    for child in children - {f"{loop_id}start"}:
        assert new[child]["data"]["isInLoop"] is True and new[child]["data"]["loop_id"] == loop_id
    remember = new[f"hitl_remember_{after}"]["data"]
    assert remember["version"] == "2"
    assert [(i["variable_selector"][1], i["operation"], i["value"]) for i in remember["items"]] == [
        ("decision", "over-write", [f"hitl_cp_{after}", "body"]),
        ("feedback", "over-write", [f"hitl_out_{after}", "body"]),
        ("output", "over-write", [f"hitl_out_{after}", "body"]), ("round", "+=", 1)]
    assert '"round": {{#' + loop_id + '.round#}}' in new[f"hitl_cp_{after}"]["data"]["body"]["data"][0]["value"]
    assert "{{#" + loop_id + ".feedback#}}" in json.dumps(new[after]["data"])
    for reader in readers:
        assert f"{loop_id}.output" in json.dumps(new[reader]["data"]) or \
            [loop_id, "output"] in json.loads(json.dumps(new[reader]["data"])).get("outputs", [{}])[0].values()


def test_revise_appends_the_feedback_to_the_llm_prompt():
    new = nodes(run("writer-llm.export.yml", "write_draft", "revise"))
    prompt = new["write_draft"]["data"]["prompt_template"]
    assert prompt[0]["text"] == "You are a concise technical writer."
    assert prompt[1]["text"] == ("Write a 150-word draft about {{#start.topic#}}.\n\n"
                                 "Reviewer feedback on your previous answer (empty on the first round): "
                                 "{{#hitl_loop_write_draft.feedback#}}")


def test_revise_gives_a_template_node_a_feedback_variable():
    new = nodes(run("writer-template.yml", "write_draft", "revise"))
    data = new["write_draft"]["data"]
    assert data["variables"][-1] == {"value_selector": ["hitl_loop_write_draft", "feedback"],
                                     "variable": "hitl_feedback"}
    assert data["template"] == ("Draft about {{ topic }}.{% if hitl_feedback %}\n\nReviewer feedback: "
                                "{{ hitl_feedback | replace('\"', '') }}{% endif %}")


def test_revise_gives_an_http_node_a_feedback_parameter():
    new = nodes(run("loop-human.export.yml", "draft", "revise"))
    assert new["draft"]["data"]["params"] == \
        "topic:{{#start.topic#}}\nround:1\nhitl_feedback:{{#hitl_loop_draft.feedback#}}"


def test_human_input_variant_uses_dify_s_form_with_the_output_prefilled():
    doc = run("writer-llm.export.yml", "write_draft", "human-input")
    new = nodes(doc)
    form = new["hitl_form_write_draft"]["data"]
    assert [m["type"] for m in form["delivery_methods"] if m["enabled"]] == ["webapp"]
    assert [a["id"] for a in form["user_actions"]] == ["approve", "revise", "abort"]
    assert form["inputs"] == [{"default": {"selector": ["write_draft", "text"], "type": "variable", "value": ""},
                               "output_variable_name": "edited", "type": "paragraph"}]
    assert "{{#hitl_form_write_draft.edited#}}" in new["polish"]["data"]["prompt_template"][1]["text"]
    handles = {(e["sourceHandle"], e["target"]) for e in map(to_plain, doc.edges)
               if e["source"] == "hitl_form_write_draft"}
    assert handles == {("approve", "polish"), ("revise", "hitl_revise_write_draft"),
                       ("abort", "hitl_abort_write_draft"), ("__timeout", "hitl_fail_write_draft")}
    assert to_plain(doc.workflow["environment_variables"]) == []  # no HTTP checkpoint, no token


def test_step_pauses_after_every_node_of_the_main_path_with_the_variables_so_far():
    doc = run("writer-llm.export.yml", "", "step")
    new = nodes(doc)
    steps = sorted(nid for nid in new if nid.startswith("hitl_step_") and node_type(new[nid]) == "http-request")
    assert steps == ["hitl_step_polish", "hitl_step_write_draft"]
    value = new["hitl_step_polish"]["data"]["body"]["data"][0]["value"]
    assert '"node_output": {"start": {"topic": "{{#start.topic#}}"}, ' \
           '"write_draft": {"text": "{{#write_draft.text#}}"}, "polish": {"text": "{{#polish.text#}}"}}' in value
    assert '"mode": "hold"' in value and '"max_rounds": 1' in value
    assert new["polish"]["data"]["prompt_template"][1]["text"].endswith("{{#write_draft.text#}}")  # nothing rewired


def test_step_nodes_can_be_chosen_and_numbers_go_in_unquoted():
    doc = load("router.export.yml")
    step(doc, ["Ask billing desk"], options())
    value = nodes(doc)["hitl_step_billing"]["data"]["body"]["data"][0]["value"]
    assert '"billing": {"body": "{{#billing.body#}}", "status_code": {{#billing.status_code#}}}' in value
    assert '"start": {"question": "{{#start.question#}}"}' in value


def test_several_nodes_in_one_go_and_an_abort_branch_the_user_names():
    doc = load("writer-llm.export.yml")
    instrument(doc, ["write_draft", "Polish"], options(on_abort="end"))
    assert validate(Graph.of(doc.graph)) == []
    edges = {(e["source"], e["sourceHandle"], e["target"]) for e in map(to_plain, doc.edges)}
    assert {("hitl_route_write_draft", "aborted", "end"), ("hitl_route_polish", "aborted", "end"),
            ("hitl_out_write_draft", "source", "polish"), ("hitl_out_polish", "source", "end")} <= edges
    assert to_plain(doc.nodes[3])["data"]["outputs"][0]["value_selector"] == ["hitl_out_polish", "body"]


def test_ids_stay_unique_when_ours_are_taken():
    doc = load("writer-llm.export.yml")
    instrument(doc, ["write_draft"], options())
    instrument(doc, ["polish"], options(output_var="text"))
    again = load("writer-llm.export.yml")
    again.nodes[2]["id"] = "hitl_cp_write_draft"  # a node already has our id
    for e in again.edges:
        for key in ("source", "target"):
            if e[key] == "polish":
                e[key] = "hitl_cp_write_draft"
    again.nodes[3]["data"]["outputs"][0]["value_selector"][0] = "hitl_cp_write_draft"
    instrument(again, ["write_draft"], options())
    assert "hitl_cp_write_draft_2" in nodes(again) and validate(Graph.of(again.graph)) == []


def test_long_node_ids_give_ids_within_dify_s_50_characters():
    doc = load("writer-template.yml")
    long_id = "a_very_long_node_identifier_of_forty_five_chars"
    doc.nodes[1]["id"] = long_id
    for e in doc.edges:
        for key in ("source", "target"):
            if e[key] == "write_draft":
                e[key] = long_id
    doc.nodes[2]["data"]["variables"][0]["value_selector"][0] = long_id
    instrument(doc, [long_id], options(revise=True))
    assert validate(Graph.of(doc.graph)) == []
    assert all(len(n["id"]) <= 50 for n in doc.nodes)


@pytest.mark.parametrize("after, kw, message", [
    ("nope", {}, "no node with id or title 'nope'"),
    ("end", {}, "'end' is a end node"),
    ("start", {}, "'start' is a start node"),
    ("write_draft", {"revise": True, "human_input": True}, "Dify supports from 1.16 only"),
])
def test_what_cannot_be_instrumented_is_refused_with_the_reason(after, kw, message):
    with pytest.raises(DslError, match=message):
        instrument(load("writer-llm.export.yml"), [after], options(**kw))


def test_revise_refuses_a_node_whose_fail_branch_would_leave_the_loop():
    with pytest.raises(DslError, match="'billing' has a fail branch"):
        instrument(load("router.export.yml"), ["billing"], options(revise=True))


def test_an_app_that_is_already_broken_is_refused():
    with pytest.raises(DslError, match="(?s)already has problems.*ghost_node"):
        instrument(load("import-bad-edge-to-missing-node.yml"), ["write_draft"], options())


def test_a_node_inside_a_loop_is_refused():
    doc = run("writer-llm.export.yml", "write_draft", "revise")
    with pytest.raises(DslError, match="inside 'hitl_loop_write_draft'"):
        instrument(doc, ["write_draft"], options())
