"""Our graph model and its checks: recorded graphs of real Dify pass, each kind of breakage is caught."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from shared.dsl import document
from shared.dsl.graph import Graph, references, validate

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "dify-fixtures"
FIXTURE_17 = FIXTURES / "17-dsl-export-import"


def graph_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", [FIXTURES / "06-if-else-route" / "graph.json",
                                  FIXTURES / "07-loop-revise" / "graph.json",
                                  FIXTURES / "08-human-input-blocking" / "graph.json",
                                  ROOT / "demo" / "review-loop.graph.json"])
def test_recorded_graphs_of_real_dify_and_the_demo_validate(path):
    assert validate(Graph.of(graph_json(path))) == []


@pytest.mark.parametrize("name", ["writer-llm.export.yml", "router.export.yml", "loop-human.export.yml",
                                  "writer-llm.with-checkpoint.yml"])
def test_recorded_exports_validate(name):
    doc = document.load((FIXTURE_17 / name).read_text())
    assert validate(Graph.of(doc.graph)) == []


def test_an_edge_to_a_missing_node_is_caught_although_dify_imports_it():
    doc = document.load((FIXTURE_17 / "import-bad-edge-to-missing-node.yml").read_text())
    assert [str(p) for p in validate(Graph.of(doc.graph))] == [
        "polish-source-ghost_node-target: edge ends at missing node 'ghost_node'"]


def loop_graph() -> dict:
    return copy.deepcopy(graph_json(FIXTURES / "07-loop-revise" / "graph.json"))


def messages(graph: dict) -> list[str]:
    return [p.message for p in validate(Graph.of(graph))]


def test_a_handle_the_source_node_does_not_have_is_caught():
    graph = graph_json(FIXTURES / "06-if-else-route" / "graph.json")
    graph["edges"][2]["sourceHandle"] = "maybe"
    assert messages(graph) == ["source handle 'maybe' is not one of 'route' (if-else): ['false', 'true']"]


def test_a_fail_branch_edge_needs_the_fail_branch_strategy():
    graph = graph_json(FIXTURES / "06-if-else-route" / "graph.json")
    graph["edges"][1]["sourceHandle"] = "fail-branch"
    assert messages(graph) == ["source handle 'fail-branch' is not one of 'checkpoint' (http-request): ['source']"]
    graph["nodes"][1]["data"]["error_strategy"] = "fail-branch"
    assert messages(graph) == []


def test_human_input_handles_are_its_action_ids_and_timeout():
    graph = graph_json(FIXTURES / "08-human-input-blocking" / "graph.json")
    graph["edges"][1]["sourceHandle"] = "publish"
    assert messages(graph) == ["source handle 'publish' is not one of 'Review' (human-input): "
                               "['__timeout', 'abort', 'approve', 'revise']"]


def test_a_loop_child_without_its_loop_fields_is_caught():
    graph = loop_graph()
    cp = next(n for n in graph["nodes"] if n["id"] == "cp")
    del cp["parentId"]
    assert messages(graph) == ["child of 'loop' needs parentId: loop"]
    cp["parentId"] = "loop"
    cp["data"]["isInLoop"] = False
    assert messages(graph) == ["child of 'loop' needs data.isInLoop: true and data.loop_id: loop"]


def test_a_loop_without_its_start_child_is_caught():
    graph = loop_graph()
    graph["nodes"] = [n for n in graph["nodes"] if n["id"] != "loopstart"]
    graph["edges"] = [e for e in graph["edges"] if e["source"] != "loopstart"]
    assert messages(graph) == ["loop needs its start child 'loopstart' (loop-start, parentId loop)"]


def test_an_edge_crossing_the_loop_boundary_is_caught():
    graph = loop_graph()
    graph["edges"].append({"id": "cp-source-end-target", "source": "cp", "sourceHandle": "source", "target": "end",
                           "data": {"isInLoop": True, "loop_id": "loop"}})
    assert messages(graph) == ["edge crosses a loop/iteration boundary (loop -> top level)"]


def test_an_edge_inside_a_loop_needs_its_loop_flags():
    graph = loop_graph()
    graph["edges"][2]["data"] = {"isInIteration": False}
    assert messages(graph) == ["edge inside 'loop' needs data.isInLoop: true and data.loop_id: loop"]


def test_ids_templates_cannot_name_and_duplicate_ids_are_caught():
    graph = graph_json(FIXTURES / "06-if-else-route" / "graph.json")
    dashed = copy.deepcopy(graph["nodes"][3])
    dashed["id"] = "end-a"
    graph["nodes"] += [dashed, copy.deepcopy(graph["nodes"][0])]
    assert messages(graph) == ["node id must be 1..50 letters, digits or _ (templates cannot name it)",
                               "two nodes have this id", "more than one Start node"]


def test_a_reference_to_a_node_that_does_not_exist_is_caught():
    graph = graph_json(FIXTURES / "06-if-else-route" / "graph.json")
    graph["nodes"][3]["data"]["outputs"][0]["value_selector"] = ["gone", "body"]
    graph["nodes"][1]["data"]["url"] += "&x={{#ghost.text#}}"
    assert messages(graph) == ["reads ghost.text but there is no node 'ghost'",
                               "reads gone.body but there is no node 'gone'"]


def test_references_read_templates_selectors_and_assigner_values():
    graph = loop_graph()
    found = {ref for node in graph["nodes"] for ref in references(node["data"])}
    assert {("start", "topic"), ("loop", "round"), ("cp", "body"), ("loop", "last"),
            ("sys", "workflow_run_id")} <= found


def test_a_node_is_found_by_id_or_by_its_one_title():
    doc = document.load((FIXTURE_17 / "writer-llm.export.yml").read_text())
    graph = Graph.of(doc.graph)
    assert graph.find("polish")["id"] == graph.find("Polish")["id"] == "polish"
    with pytest.raises(KeyError, match="no node with id or title 'Draft'; nodes: start \\('Start'\\), write_draft"):
        graph.find("Draft")


def test_descendants_ancestors_and_run_order():
    doc = document.load((FIXTURE_17 / "router.export.yml").read_text())
    graph = Graph.of(doc.graph)
    assert graph.descendants("route") == {"billing", "support", "end_billing", "end_support", "end_billing_failed"}
    assert graph.ancestors("end_support") == {"support", "route", "start"}
    order = graph.topological()
    assert order[:2] == ["start", "route"] and order.index("billing") < order.index("end_billing")
