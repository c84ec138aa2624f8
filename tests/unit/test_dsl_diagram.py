"""The Mermaid diagram of a graph (`hitl instrument --diagram`, the README's before/after)."""
from __future__ import annotations

from pathlib import Path

from shared.dsl import document
from shared.dsl.diagram import mermaid
from shared.dsl.graph import Graph
from shared.dsl.instrument import Options, instrument
from shared.dsl.recipe import RecipeSettings

WRITER = (Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "17-dsl-export-import"
          / "writer-llm.export.yml")


def test_the_plain_export_is_a_chain_whose_node_ids_cannot_clash_with_mermaid_keywords():
    doc = document.load(WRITER.read_text())
    assert mermaid(Graph.of(doc.graph)) == (
        'flowchart LR\n'
        '  n_start(["Start<br/><small>start</small>"])\n'
        '  n_write_draft["Write draft<br/><small>llm</small>"]\n'
        '  n_polish["Polish<br/><small>llm</small>"]\n'
        '  n_end(["end<br/><small>end</small>"])\n'
        '  n_start --> n_write_draft\n'
        '  n_write_draft --> n_polish\n'
        '  n_polish --> n_end\n')


def test_a_revise_loop_is_a_subgraph_entered_through_its_start_and_fail_branches_are_dotted():
    doc = document.load(WRITER.read_text())
    instrument(doc, ["write_draft"], Options(RecipeSettings(url="http://x/v1/checkpoints"), revise=True))
    lines = mermaid(Graph.of(doc.graph)).splitlines()
    start = lines.index('  subgraph n_hitl_loop_write_draft["Review loop: Write draft<br/><small>loop</small>"]')
    assert lines[start + 1] == "    n_hitl_loop_write_draftstart((start))"
    assert lines[start + 7] == "  end"
    assert "  n_hitl_loop_write_draftstart --> n_write_draft" in lines
    assert "  n_hitl_cp_write_draft -.->|fail-branch| n_hitl_failed_write_draft" in lines
    assert "  n_hitl_route_write_draft -->|approved| n_polish" in lines


def test_the_readme_shows_what_instrument_draws():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Add review to an existing app", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```mermaid\n")[1:]]
    doc = document.load(WRITER.read_text())
    before = mermaid(Graph.of(doc.graph))
    instrument(doc, ["Write draft"], Options(RecipeSettings(url="http://x/v1/checkpoints")))
    revised = document.load(WRITER.read_text())
    instrument(revised, ["Write draft"], Options(RecipeSettings(url="http://x/v1/checkpoints"), revise=True))
    assert blocks == [before, mermaid(Graph.of(doc.graph)), mermaid(Graph.of(revised.graph))]
