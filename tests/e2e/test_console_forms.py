"""Dify form checkpoints in the review console, in a real browser (Debian's headless Chromium driven by
Playwright) against the real processes, RabbitMQ and the Dify simulator running fixture 09's graph
(a Human Input node with approve / revise / abort): the form shows up live in the inbox, is decided
from its page with edited input, and the delivery state follows the run live — resumed, or stuck
when Dify loses the resume. The form token never reaches a page.

One stack and one browser for the module; the screenshot of the form page lands in
tests/e2e/screenshots/form.png.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.console_support import REVIEWER, console_store, shot, start_console
from tests.e2e.harness import final_run

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "09-human-input-streaming" / "graph.json"
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}
LIVE_MS = 3_000  # an event, then the page re-reads itself


@pytest.fixture(scope="module")
def stack(tmp_path_factory, rabbitmq_url):
    work = tmp_path_factory.mktemp("console-forms")
    env = {"HITL_RESUME_TIMEOUT_S": "3", "HITL_POLL_MAX_INTERVAL_S": "1"}
    with console_store(work) as database_url, \
            ProcessStack(work, database_url=database_url, rabbitmq_url=rabbitmq_url, env=env) as stack:
        graph = json.loads(FIXTURE.read_text())
        app = {"name": "forms", "graph": graph, "api_key": DIFY_APP_KEY}
        r = httpx.post(f"{stack.sim_url}/_sim/apps", json=app)
        r.raise_for_status()
        start_console(stack)
        yield stack


def gateway_run(stack: ProcessStack, topic: str) -> tuple[str, str]:
    """A streaming run through the gateway, as a Dify client that only changed its base URL: (run id, form token)."""
    body = {"inputs": {"topic": topic}, "response_mode": "streaming", "user": "editor-1"}
    with httpx.stream("POST", f"{stack.ingest_url}/v1/workflows/run", headers=DIFY, json=body, timeout=30) as r:
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert events[-1]["event"] == "workflow_paused", events[-1]
    token = next(e for e in events if e["event"] == "human_input_required")["data"]["form_token"]
    return events[0]["workflow_run_id"], token


def form_checkpoint(stack: ProcessStack, run_id: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = httpx.get(f"{stack.ingest_url}/v1/checkpoints?status=open&run_id={run_id}", headers=REVIEWER).json()
        found = [c for c in rows["checkpoints"] if c["kind"] == "dify-form"]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no form checkpoint for run {run_id}")


def page_html(page, path: str) -> str:
    """The page as the server sends it (not the live DOM)."""
    return page.evaluate("p => fetch(p, {credentials: 'same-origin'}).then(r => r.text())", path)


def test_a_form_appears_live_is_revised_with_edited_text_and_the_page_follows_the_resume(stack, open_page):
    inbox = open_page()
    run_id, token = gateway_run(stack, "Press release")
    row = inbox.locator("tr[data-checkpoint]", has_text="Review")
    row.locator(".badge.dify", has_text="Dify form").wait_for(timeout=LIVE_MS + 5_000)
    assert inbox.evaluate("window.__noReload") is True
    shot(inbox, "form-inbox")
    cp = form_checkpoint(stack, run_id)

    page = open_page(path=f"/checkpoints/{cp['id']}")
    form = page.locator(".dform")
    assert "Topic: Press release" in form.inner_text() and "{{#$output" not in page.content()
    assert form.locator('.ff[data-field="edited"] .ff-value').inner_text() == "Press release"
    assert page.locator('[data-live="delivery"] .pill').inner_text() == "waiting for a decision"
    assert [b.inner_text().split("\n")[-1].strip() for b in page.locator("[data-form-action]").all()] == \
        ["Approve", "Request revision", "Abort"]
    assert page.locator('[data-live="rounds"]').count() == 0  # a form is one pause: no rounds table
    assert "Dify takes the form's Timeout branch" in page.locator(".cp-head").inner_text()
    for html in (page.content(), page_html(page, f"/checkpoints/{cp['id']}"), page_html(page, "/"),
                 page_html(page, f"/runs/{run_id}"), page_html(page, "/runs")):
        assert token not in html

    edited = "Press release, with a customer quote from alice"
    page.keyboard.press("e")  # focuses the paragraph
    page.locator("textarea#fi-edited").fill(edited)
    assert form.locator('[data-form-preview="edited"]').inner_text() == edited  # the form mirrors the field
    shot(page, "form")
    page.locator("[data-form-action=revise]").click()
    page.locator("#result.green", has_text="Request revision").wait_for()
    delivery = page.locator('[data-live="delivery"]')
    delivery.locator(".pill", has_text="resumed").wait_for(timeout=15_000)
    assert "green" in delivery.get_attribute("class")
    assert page.evaluate("window.__noReload") is True
    run = final_run(stack, run_id)
    assert run["status"] == "succeeded"
    outputs = run["outputs"] if isinstance(run["outputs"], dict) else json.loads(run["outputs"])
    assert (outputs["action_id"], outputs["edited"]) == ("revise", edited)
    assert edited in page.locator(".decision").inner_text()  # what was sent
    history = page.locator('[data-live="history"]').inner_text()
    assert all(step in history for step in ("captured", "decision", "delivered", "resumed"))
    assert token not in page.content()
    shot(page, "form-resumed")
    page.goto(f"/runs/{run_id}")
    page.locator(".cps .badge.dify").wait_for()
    assert "resumed" in page.locator(".cps").inner_text() and "no form token" not in page.content()
    shot(page, "form-run")


def test_refusals_are_shown_plainly_and_a_lost_resume_shows_resume_stuck_live(stack, open_page):
    httpx.post(f"{stack.sim_url}/_sim/faults", json={"resume_lost": True}).raise_for_status()
    try:
        run_id, token = gateway_run(stack, "Lost resume")
        cp = form_checkpoint(stack, run_id)
        page = open_page(path=f"/checkpoints/{cp['id']}")
        page.locator("textarea#fi-edited").fill("")
        page.keyboard.press("Escape")
        page.keyboard.press("1")  # picks Approve; Enter sends it
        assert page.evaluate("document.activeElement.dataset.formAction") == "approve"
        page.keyboard.press("Enter")
        page.locator("#result.red").wait_for()
        result = page.locator("#result").inner_text()
        assert "every input of the form needs a value" in result and "422 missing_inputs" in result
        assert page.locator("textarea#fi-edited.invalid").count() == 1

        page.locator("textarea#fi-edited").fill("Fine as it is")
        page.keyboard.press("Escape")
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.locator("#result.green", has_text="Approve").wait_for()
        delivery = page.locator('[data-live="delivery"]')
        delivery.locator(".pill", has_text="resume stuck").wait_for(timeout=15_000)
        assert "red" in delivery.get_attribute("class")
        assert "still paused" in delivery.inner_text()
        assert page.evaluate("window.__noReload") is True
        assert token not in page.content() and token not in page_html(page, f"/runs/{run_id}")
        shot(page, "form-resume-stuck")
    finally:
        httpx.post(f"{stack.sim_url}/_sim/faults", json={"resume_lost": False})
