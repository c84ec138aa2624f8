"""The console's rendering of node outputs: safe markdown, the JSON tree, diffs between rounds, and the
event summaries browsers get."""
from __future__ import annotations

from services.console import render
from services.console.live import summary


def test_markdown_escapes_html_before_adding_its_own_markup():
    html = str(render.markdown('<script>alert(1)</script> <img src=x onerror="alert(1)"> **bold**'))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<strong>bold</strong>" in html


def test_markdown_renders_headings_emphasis_code_and_lists():
    html = str(render.markdown("# Title\n\nSome *italic* and `x < y` code\n\n- one\n- two\n\n1. first\n\n"
                               "```\n<b>raw</b>\n```"))
    assert '<h3 class="md-h">Title</h3>' in html
    assert "<em>italic</em>" in html and "<code>x &lt; y</code>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html and "<ol>\n<li>first</li>\n</ol>" in html
    assert "<pre><code>&lt;b&gt;raw&lt;/b&gt;</code></pre>" in html


def test_markdown_links_only_http_and_https_and_never_for_the_opener():
    html = str(render.markdown("[docs](https://example.com/a?b=1&c=2) [bad](javascript:alert(1)) see http://x.org."))
    assert ('<a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank">docs</a>'
            in html)
    assert "javascript:" in html and 'href="javascript' not in html
    assert '<a href="http://x.org" rel="noopener noreferrer nofollow" target="_blank">http://x.org</a>.' in html


def test_markdown_does_not_let_an_attribute_break_out_of_a_link():
    html = str(render.markdown('[x](https://e.com/"onmouseover="alert(1))'))
    assert 'onmouseover="' not in html


def test_json_tree_escapes_keys_and_values_and_folds_deep_levels():
    html = str(render.json_tree({"<k>": "<v>", "n": 1, "deep": {"deeper": {"deepest": [True, None]}}}))
    assert "&lt;k&gt;" in html and '"&lt;v&gt;"' in html and "<k>" not in html
    assert html.count("<details") == 4 and html.count("<details class=\"jt-node\" open>") == 2
    assert '<span class="jt-bool">true</span>' in html and '<span class="jt-null">null</span>' in html


def test_json_tree_stops_at_its_node_budget():
    html = str(render.json_tree(list(range(render.MAX_TREE_NODES + 50))))
    assert "jt-more" in html


def test_output_kinds_decide_how_an_output_is_shown_and_edited():
    assert render.output_kind({"a": 1}) == "json" and render.output_kind(3) == "json"
    assert render.output_kind('{"a": 1}') == "json-text" and render.output_kind("[1, 2]") == "json-text"
    assert render.output_kind("{not json") == "text" and render.output_kind("hello") == "text"
    assert render.as_text({"a": 1}) == '{\n  "a": 1\n}'
    assert render.as_text("plain") == "plain"


def test_diff_marks_the_changed_words_and_folds_long_unchanged_runs():
    rows = render.diff_lines("Draft 1 about pricing.", "Draft 2 about pricing. Revised: add a tier")
    assert [r["op"] for r in rows] == ["del", "ins"]
    assert str(rows[0]["html"]) == "Draft <del>1</del> about pricing."
    assert str(rows[1]["html"]) == "Draft <ins>2</ins> about pricing.<ins> Revised: add a tier</ins>"
    before = "\n".join(f"line {i}" for i in range(30))
    rows = render.diff_lines(before, before.replace("line 15", "line fifteen"))
    assert [r["op"] for r in rows].count("gap") == 2
    assert len(rows) < 12


def test_diff_escapes_html():
    rows = render.diff_lines("<b>old</b>", "<b>new</b>")
    assert "<b>" not in "".join(str(r["html"]) for r in rows)


def test_event_summaries_carry_ids_and_statuses_but_no_outputs_or_secrets():
    body = {"type": "checkpoint.opened", "occurred_at": 1.0,
            "checkpoint": {"id": "c1", "app": "demo", "workflow_run_id": "r1", "node_id": "draft", "round": 1,
                           "status": "open",
                           "node_output": "the draft", "secret": "form-token", "form": {"content": "x"}}}
    out = summary("checkpoint.opened", body)
    assert out == {"type": "checkpoint.opened", "at": 1.0, "app": "demo", "checkpoint_id": "c1", "run_id": "r1",
                   "node_id": "draft",
                   "round": 1, "status": "open", "action": None, "decided_by": None, "claimed_by": None,
                   "progress": None}
    node = summary("node.running", {"type": "node.running",
                                    "run": {"id": "r1", "status": "running", "inputs": {"k": 1}},
                                    "node": {"node_id": "checkpoint", "status": "running"}})
    assert node["run_id"] == "r1" and node["node_id"] == "checkpoint" and "inputs" not in node
