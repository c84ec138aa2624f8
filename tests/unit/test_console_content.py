"""Rendering never fails on content: whatever a node output, a message, a node id or a Dify user holds
(NUL, our own placeholder marks, lone surrogates, deep nesting, markdown edge cases), the page
answers 200 and shows it escaped."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.console import render
from shared.store import checkpoints as store
from tests.unit.console_support import TestClient, sign_in

NASTY = ["\x000\x00", "\x005\x00 `code` \x000\x00", "a\x00b", "\ud800", "x \udfff y", "\ue0000\ue001",
         "**\x000\x00**", "[l](http://x/\x000\x00)", "```\n\x00\n", "# \x000\x00", "- \x009\x00",
         "{\"a\": \"\\u0000\"}",
         "http://e.com/\x000\x00", "`\x000\x00`" * 50]


@pytest.mark.parametrize("text", NASTY)
def test_markdown_and_the_json_tree_take_any_text(text):
    html = str(render.render_output(text))
    assert "\x00" not in html and "\ud800" not in html
    assert str(render.render_output({"k\x00": [text, {"deep": text}]}))
    assert str(render.form_html({"form_content": text + "{{#$output.a#}}",
                                 "inputs": [{"type": "paragraph", "output_variable_name": "a"}]}))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=200))
def test_no_text_makes_the_renderer_raise(text):
    render.render_output(text)
    render.markdown(text)
    render.diff_lines(text, text[::-1])


def test_a_deeply_nested_output_is_shown_not_failed():
    value: object = "leaf"
    for _ in range(400):
        value = [value]
    assert "jt" in str(render.render_output(value)) or "raw" in str(render.render_output(value))


def add(db, **values) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    row = dict(id=cid, app="demo", kind="http", workflow_run_id=str(uuid.uuid4()), node_id="draft", round=1,
               status="open", mode="hold", message="m", node_output="o", timeout_s=300, deadline=now + 300,
               on_timeout="abort", assignees=[], max_rounds=5, created_at=now, updated_at=now)
    row.update(values)
    with db.write() as conn:
        store.insert_if_absent(conn, row)
    return cid


@pytest.mark.parametrize("field,value", [("node_output", "\x000\x00"), ("node_output", "lone \ud800 surrogate"),
                                         ("message", "\x000\x00 and more"), ("node_output", {"\x000\x00": "\ud800"}),
                                         ("user", "dify-user-\x000\x00"),
                                         ("node_output", json.dumps({"a": "\x000\x00"}))])
def test_the_checkpoint_page_and_the_inbox_answer_200_whatever_the_content(console, field, value):
    app, db = console
    cid = add(db, **{field: value})  # SQLite holds NUL in text; PostgreSQL does not (ingest refuses it there)
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}")
    assert page.status_code == 200 and "\x00" not in page.text
    assert client.get("/").status_code == 200
    assert client.get("/?status=all&q=%00").status_code == 200
