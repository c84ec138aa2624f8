"""Deciding in the review console, in a real browser (Debian's headless Chromium driven by Playwright)
against the real processes, the real RabbitMQ and the Dify simulator: the live inbox, deciding from the
page (keyboard first), round 2 with a diff, JSON edits, assignees, CSRF, a decision taken elsewhere while
the reviewer types, and a step pause. Signing in and the pages a reviewer reads: test_console_pages.py.

One stack and one browser for the module; each test resolves the checkpoints it opens. Screenshots
land in tests/e2e/screenshots/.
"""
from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.e2e.console_support import (
    LIVE_S,
    post_decision,
    shot,
    start_run,
    wait_checkpoint,
    wait_run_status,
)
from tests.e2e.harness import node

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")
# Waits are locators and expect(): page.wait_for_function evaluates a string, which the console's CSP
# (script-src 'self', no 'unsafe-eval') refuses whenever the condition does not hold at once.
expect = playwright_api.expect


def json_output_graph(graph: dict) -> None:
    """The checkpoint sends a JSON object as node output, and only alice may decide."""
    item = node(graph, "checkpoint")["data"]["body"]["data"][0]
    item["value"] = item["value"].replace(
        '"node_output": "{{#draft.output#}}"',
        '"node_output": {"title": "{{#start.topic#}}", "draft": "{{#draft.output#}}", "tags": ["launch", "blog"], '
        '"meta": {"words": 6, "approved_before": false}}').replace('"on_timeout": "abort"',
                                                                   '"on_timeout": "abort", "assignees": ["alice"]')


def test_a_run_reaching_a_checkpoint_appears_in_an_open_inbox_without_reload(stack, e2e, open_page):
    e2e.register()
    page = open_page()
    topics = ["release notes", "pricing page", "onboarding email"]
    runs = [start_run(stack, topic) for topic in topics]
    row = page.locator("tr[data-checkpoint]", has_text="Review the draft about onboarding email")
    row.wait_for()
    expect(page.locator("tr[data-checkpoint]").nth(2)).to_be_attached(timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    count = page.locator("tr[data-checkpoint]").count()
    assert page.title() == f"({count}) Inbox — dify-hitl"
    assert page.locator(".count").inner_text() == str(count)
    assert page.locator(".tabs .tab-count").inner_text() == str(count)  # the status tabs follow live too
    assert re.fullmatch(r"\d+m \d\ds", row.locator(".countdown").inner_text())
    shot(page, "inbox")

    page.select_option("select[name=node]", "draft")  # filters: a plain GET form
    page.wait_for_url(re.compile(r".*node=draft.*"))
    assert page.locator("tr[data-checkpoint]").count() == count
    for run_id in runs:
        e2e.decide(wait_checkpoint(stack, run_id)["id"], "abort", "--reason", "cleaning up")
    page.goto("/")
    page.wait_for_selector("#live[data-state=live]")
    assert page.locator("tr[data-checkpoint]").count() == 0 and page.title() == "(0) Inbox — dify-hitl"


def test_approve_from_the_page_turns_the_run_green_live_and_a_second_tab_sees_it(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "quarterly report")
    cp = wait_checkpoint(stack, run_id)
    run_page = open_page(path=f"/runs/{run_id}")
    run_page.wait_for_selector('li[data-node="checkpoint"][data-state="waiting"]')
    assert run_page.locator(".head-line .pill").inner_text() == "waiting for a person"
    assert "blue" in run_page.locator('li[data-node="checkpoint"]').get_attribute("class")
    shot(run_page, "run-waiting")
    other_tab = open_page("bob", f"/checkpoints/{cp['id']}")
    page = open_page(path=f"/checkpoints/{cp['id']}")
    assert "Draft 1 about quarterly report." in page.locator(".output").inner_text()

    page.keyboard.press("a")  # opens Approve with its button focused
    assert page.locator('details[data-action="approve"]').get_attribute("open") is not None
    page.keyboard.press("Enter")
    page.locator("#result.green").wait_for()
    assert page.locator("#result").inner_text().startswith("Approved")
    other_tab.locator(".cp-head .pill", has_text="approved").wait_for(timeout=LIVE_S * 1000)
    assert other_tab.locator("[data-decide]").count() == 0
    assert "by alice via console" in other_tab.locator(".cp-head").inner_text()

    run_page.locator(".head-line .pill", has_text="succeeded").wait_for(timeout=15_000)
    expect(run_page.locator(".tl:not(.green)")).to_have_count(0, timeout=10_000)
    assert "green" in run_page.locator(".head-line .pill").get_attribute("class")
    assert run_page.locator("li.tl").count() >= 6
    for tab in (run_page, other_tab, page):
        assert tab.evaluate("window.__noReload") is True
    shot(run_page, "run")


def test_revise_with_feedback_shows_round_two_with_a_diff_and_a_cli_decision_updates_the_page(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "pricing page")
    first = wait_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{first['id']}")
    page.keyboard.press("r")
    page.keyboard.type("add the enterprise tier")
    page.keyboard.press("Control+Enter")
    page.locator("#result.green", has_text="Sent back for revision").wait_for()
    page.locator("a", has_text="Round 2 is open").click()  # appears live when round 2 opens
    page.wait_for_selector('#live[data-state="live"]')
    diff = page.locator("details.diff[open]")
    assert "add the enterprise tier" in diff.locator("summary").inner_text()
    assert diff.locator(".dl.del del").first.inner_text() == "1"
    assert "Revised after review: add the enterprise tier" in diff.locator(".dl.ins").inner_text()
    assert page.locator("tr.current").inner_text().startswith("2")
    history = page.locator('[data-live="history"]').inner_text()
    assert "opened" in history
    shot(page, "checkpoint")

    page.evaluate("window.__noReload = true")
    second = wait_checkpoint(stack, run_id, round_=2)
    e2e.decide(second["id"], "approve")  # through the HTTP API, by the CLI
    page.locator(".cp-head", has_text="via api").wait_for(timeout=LIVE_S * 1000 + 1000)
    assert page.evaluate("window.__noReload") is True
    assert "cli" in page.locator('[data-live="history"]').inner_text()
    wait_run_status(stack, run_id, "succeeded")


def test_edit_refuses_invalid_json_with_a_message_and_sends_valid_json(stack, e2e, open_page):
    e2e.register(json_output_graph)
    run_id = start_run(stack, "launch post")
    cp = wait_checkpoint(stack, run_id)
    assert cp["node_output"]["tags"] == ["launch", "blog"]

    bob = open_page("bob", f"/checkpoints/{cp['id']}")
    assert "you are not among them" in bob.locator(".decision .note").inner_text()
    buttons = bob.locator(".decision button[type=submit]")
    assert buttons.count() == 4 and all(buttons.nth(i).is_disabled() for i in range(4))
    assert buttons.first.get_attribute("title").startswith("Assigned to alice")
    status, body = post_decision(bob, cp["id"], {"action": "approve"})  # and the decider says the same
    assert status == 422 and body["error"]["code"] == "not_assignee"
    bob.locator(".history tr.rejected", has_text="not_assignee").wait_for(timeout=LIVE_S * 1000)

    page = open_page(path=f"/checkpoints/{cp['id']}")
    assert page.locator(".jt-key", has_text="tags").count() == 1  # the JSON tree
    page.keyboard.press("e")
    editor = page.locator("textarea#output")
    assert json.loads(editor.input_value())["title"] == "launch post"
    editor.fill('{"title": "launch post", "draft": }')
    page.locator('details[data-action="edit"] button[type=submit]').click()
    error = page.locator('details[data-action="edit"] .field-error')
    assert error.is_visible() and error.inner_text().startswith("Not valid JSON")
    assert page.locator("#result").is_hidden()  # nothing was sent
    shot(page, "checkpoint-json")
    status, body = post_decision(page, cp["id"], {"action": "edit", "output": '{"title": '})
    assert status == 422 and body["error"]["code"] == "invalid_json" and "line 1" in body["error"]["message"]

    edited = {"title": "Launch post", "draft": "Hand-written by alice.", "tags": ["launch"]}
    editor.fill(json.dumps(edited, indent=2))
    page.keyboard.press("Control+Enter")
    page.locator("#result.green", has_text="Edited output sent").wait_for()
    page.locator(".cp-head .pill", has_text="edited").wait_for(timeout=LIVE_S * 1000)
    assert "Output sent to the workflow" in page.locator(".output").last.locator("xpath=..").inner_text()
    run = wait_run_status(stack, run_id, "succeeded")
    assert json.loads(run["outputs"]["text"]) == edited


def test_a_post_without_the_csrf_token_is_refused_and_a_late_decision_gets_409(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "status update")
    cp = wait_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{cp['id']}")
    for form in (False, True):
        status, body = post_decision(page, cp["id"], {"action": "approve"}, csrf=False, form=form)
        assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, _ = post_decision(page, cp["id"], {"action": "approve", "csrf": "forged"}, csrf=False, form=True)
    assert status == 403
    logout = page.evaluate("fetch('/logout', {method: 'POST'}).then(r => r.status)")
    assert logout == 403  # signing out is a state change too
    assert wait_checkpoint(stack, run_id)["id"] == cp["id"]  # still open

    page.evaluate("window.hitlLive.close()")  # this tab no longer hears about decisions
    e2e.hitl("decide", cp["id"], "approve", reviewer_token="rv-bob-token")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.locator("#result.red").wait_for()
    result = page.locator("#result").inner_text()
    assert "Someone else decided first: approve by bob via api" in result and "409" in result
    page.locator(".cp-head .pill", has_text="approved").wait_for()  # and the page shows the winner
    wait_run_status(stack, run_id, "succeeded")


# ---------------------------------------------------------------------- issue 18: the reviewer's day
def test_typed_feedback_is_kept_when_the_cli_decides_meanwhile_and_a_second_tab_is_told_too(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "typed work")
    cp = wait_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{cp['id']}")
    page.keyboard.press("r")
    page.keyboard.type("half-written thought about the tone")
    e2e.decide(cp["id"], "approve")  # a colleague, through the CLI
    banner = page.locator('[data-live="decision"] .elsewhere')
    banner.wait_for(timeout=LIVE_S * 1000 + 2000)
    assert "Decided elsewhere while you were typing: approved by alice via api." in banner.inner_text()
    assert page.locator("textarea#feedback").input_value() == "half-written thought about the tone"
    assert page.locator('details[data-action="revise"] button[type=submit]').is_disabled()
    page.locator(".cp-head .pill", has_text="approved").wait_for()  # the rest of the page moved on
    shot(page, "checkpoint-decided-elsewhere")
    wait_run_status(stack, run_id, "succeeded")

    run_id = start_run(stack, "second tab")
    cp = wait_checkpoint(stack, run_id)
    typing = open_page(path=f"/checkpoints/{cp['id']}")
    deciding = open_page(path=f"/checkpoints/{cp['id']}")
    typing.keyboard.press("e")
    typing.locator("textarea#output").fill("my own version, not sent yet")
    deciding.keyboard.press("x")
    deciding.keyboard.type("not needed any more")
    deciding.keyboard.press("Enter")
    deciding.locator("#result.green").wait_for()
    banner = typing.locator('[data-live="decision"] .elsewhere')
    banner.wait_for(timeout=LIVE_S * 1000 + 2000)
    assert "aborted by alice via console" in banner.inner_text()
    assert typing.locator("textarea#output").input_value() == "my own version, not sent yet"
    assert deciding.locator('[data-live="decision"] .elsewhere').count() == 0  # its own decision: no warning
    typing.click("text=Show the decision instead")
    assert "aborted" in typing.locator('[data-live="decision"] .decided').inner_text()


def test_a_step_pause_shows_each_nodes_variables_and_edit_then_continue_sends_them(stack, open_page):
    """A checkpoint as `hitl instrument --step` sends it (shared/dsl/step.py), held through ingest."""
    import threading

    run_id, answer = f"step-{int(time.time() * 1000)}", {}
    body = {"workflow_run_id": run_id, "node_id": "llm", "round": 1, "max_rounds": 1, "mode": "hold",
            "message": "Step: Write draft finished", "timeout_s": 120, "on_timeout": "abort",
            "node_output": {"start": {"topic": "launch"}, "llm": {"text": "Draft about launch", "tokens": 42}}}

    def call() -> None:
        r = httpx.post(stack.ingest_url + "/v1/checkpoints", json=body, timeout=130,
                       headers={"Authorization": "Bearer cp-demo-token-change-me"})
        answer.update(r.json())

    held = threading.Thread(target=call)
    held.start()
    cp = wait_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{cp['id']}")
    assert page.locator(".insp-node").count() == 2
    assert "Draft about launch" in page.locator('.insp-node[data-step-node="llm"]').inner_text()
    assert page.locator('[data-live="rounds"]').count() == 0 and page.locator("[data-step-next]").is_visible()
    shot(page, "checkpoint-step")
    page.keyboard.press("e")
    page.locator('textarea[data-step-var="text"]').fill("A better draft")
    page.locator('textarea[data-step-var="tokens"]').fill("not json")
    page.locator('details[data-action="edit"] button[type=submit]').click()
    assert "llm.tokens is not valid JSON" in page.locator('details[data-action="edit"] .field-error').inner_text()
    page.locator('textarea[data-step-var="tokens"]').fill("7")
    page.locator('details[data-action="edit"] button[type=submit]').click()
    page.locator("#result.green").wait_for()
    held.join(timeout=30)
    assert answer["action"] == "edit"
    assert answer["output"] == {"start": {"topic": "launch"}, "llm": {"text": "A better draft", "tokens": 7}}
