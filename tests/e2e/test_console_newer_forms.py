"""Dify 1.15–1.17 Human Input inputs in the console, in a real browser against the real processes and the
simulator in 1.17 mode (`--dify-version 1.17`): a select is a select, a file is given as a link Dify can
fetch (remote_url: an upload cannot go through dify-hitl), and the run resumes with those values."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.console_support import console_store, contrast_failures, shot, sideways_scroll, start_console
from tests.e2e.harness import final_run
from tests.e2e.test_console_forms import form_checkpoint, gateway_run

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "09-human-input-streaming" / "graph.json"


def newer_form_graph() -> dict:
    """Fixture 09's graph with the inputs Dify 1.15+ added: a required select and a required file."""
    graph = json.loads(FIXTURE.read_text())
    for node in graph["nodes"]:
        data = node["data"]
        if data.get("type") == "human-input":
            data["form_content"] += "\n\nTone: {{#$output.tone#}}\n\nAttachment: {{#$output.attachment#}}"
            data["inputs"] += [{"type": "select", "output_variable_name": "tone", "options": ["formal", "casual"]},
                               {"type": "file", "output_variable_name": "attachment",
                                "allowed_file_upload_methods": ["remote_url", "local_file"]}]
        if node["id"] == "end_approve":
            data["outputs"] += [{"variable": "tone", "value_selector": ["review", "tone"], "value_type": "string"},
                                {"variable": "attachment", "value_selector": ["review", "attachment"],
                                 "value_type": "file"}]
    return graph


@pytest.fixture(scope="module")
def stack(tmp_path_factory, rabbitmq_url):
    work = tmp_path_factory.mktemp("console-newer-forms")
    with console_store(work) as database_url, \
            ProcessStack(work, database_url=database_url, rabbitmq_url=rabbitmq_url,
                         env={"HITL_POLL_MAX_INTERVAL_S": "1"}, sim_args=["--dify-version", "1.17"]) as stack:
        r = httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": "forms", "graph": newer_form_graph(),
                                                           "api_key": DIFY_APP_KEY})
        r.raise_for_status()
        start_console(stack)
        yield stack


def test_a_select_and_a_file_link_are_filled_on_the_page_and_the_run_resumes_with_them(stack, open_page):
    run_id, _ = gateway_run(stack, "Launch notes")
    cp = form_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{cp['id']}", axe=True)
    tone = page.locator("select#fi-tone")
    assert [o.inner_text() for o in tone.locator("option").all()] == ["— choose —", "formal", "casual"]
    assert "Uploading a file cannot go through dify-hitl" in page.locator('[data-input-type="file"]').inner_text()
    assert page.locator('[data-live="rounds"]').count() == 0  # a Dify form has no rounds table
    assert "Timeout" in page.locator(".cp-head").inner_text()  # Dify's own branch name
    assert contrast_failures(page) == [] and sideways_scroll(page) <= 0

    page.locator("[data-form-action=approve]").click()  # nothing chosen yet: the decider says which inputs
    page.locator("#result.red").wait_for()
    assert "422" in page.locator("#result").inner_text()

    tone.select_option("formal")
    page.locator("input#fi-attachment").fill("ftp://files.example/brief.pdf")
    page.locator("[data-form-action=approve]").click()
    page.locator("#result.red", has_text="invalid_input").wait_for()
    assert "not an http(s) link" in page.locator("#result").inner_text()

    link = "https://files.example/brief.pdf"
    page.locator("input#fi-attachment").fill(link)
    shot(page, "form-newer-inputs")
    page.locator("[data-form-action=approve]").click()
    page.locator("#result.green").wait_for()
    page.locator('[data-live="delivery"] .pill', has_text="resumed").wait_for(timeout=20_000)
    run = final_run(stack, run_id)
    outputs = run["outputs"] if isinstance(run["outputs"], dict) else json.loads(run["outputs"])
    assert outputs["action_id"] == "approve" and outputs["tone"] == "formal"
    assert outputs["attachment"]["transfer_method"] == "remote_url" and outputs["attachment"]["remote_url"] == link
    time.sleep(0.2)
    sent = page.locator(".decision").inner_text()
    assert "formal" in sent and link in sent
