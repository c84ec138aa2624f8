"""Decision policies in the review console, in a real browser (headless Chromium via Playwright) against the
real processes, RabbitMQ and the Dify simulator: a 2-of-3 quorum voted by two reviewers in two browser
sessions (the held Dify call released only at the second vote), a claim seen live by another reviewer,
a reassign, and a bulk preview then apply over several checkpoints with one refusal — keyboard first,
on a 390 px phone with no sideways scroll and axe-core AA contrast on every new page.

One stack and one browser for the module; each test resolves the checkpoints it opens."""
from __future__ import annotations

import json
import re

import pytest

from demo.stack import ProcessStack
from tests.e2e.console_support import LIVE_S, contrast_failures, shot, sideways_scroll, start_console
from tests.e2e.harness import E2E, set_checkpoint_body

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")

REVIEWERS = [{"name": "alice", "token": "rv-alice-token", "apps": ["demo"]},
             {"name": "bob", "token": "rv-bob-token", "apps": ["demo"]},
             {"name": "carol", "token": "rv-carol-token", "apps": ["demo"], "groups": ["legal"]}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, rabbitmq_url):
    work = tmp_path_factory.mktemp("console-policies")
    with ProcessStack(work, database_url=f"sqlite:///{work / 'hitl.db'}", rabbitmq_url=rabbitmq_url,
                      env={"HITL_REVIEWERS": json.dumps(REVIEWERS)}) as stack:
        start_console(stack, reviewers=REVIEWERS)
        yield stack


def register(e2e: E2E, **body) -> None:
    e2e.register(lambda g: set_checkpoint_body(g, **body))


def test_a_two_of_three_quorum_voted_in_two_browser_sessions_releases_the_held_call_at_the_second(e2e, open_page):
    register(e2e, assignees=["alice", "bob", "carol"], approval={"mode": "m_of_n", "m": 2})
    run = e2e.start_run("quorum in the console")
    cp = e2e.wait_open()[0]
    alice = open_page("alice", f"/checkpoints/{cp['id']}")
    bob = open_page("bob", f"/checkpoints/{cp['id']}", phone=True, axe=True)
    assert "0 of 2 approved" in bob.locator(".cp-head .qtext").inner_text()
    assert "2 of 3" in alice.locator('[data-policy="approval"]').inner_text()

    alice.keyboard.press("a")
    alice.keyboard.press("Enter")
    alice.locator("#result.green", has_text="Your approve vote counted: 1 of 2 approved: alice").wait_for()
    bob.locator(".cp-head .qtext", has_text="1 of 2 approved: alice").wait_for(timeout=LIVE_S * 1000 + 1000)
    assert bob.locator('[data-voter="alice"]').inner_text().startswith("✓")
    alice.locator('.decision [data-code="already_voted"]').wait_for()  # her page knows she voted
    buttons = alice.locator(".decision button[type=submit]")
    assert buttons.count() == 4 and all(buttons.nth(i).is_disabled() for i in range(4))
    assert "revise with the change" in bob.locator('details[data-action="edit"] summary').inner_text()
    assert not run.done()  # the held Dify call waits for the quorum
    shot(alice, "checkpoint-quorum")
    assert sideways_scroll(bob) <= 0 and contrast_failures(bob) == []
    shot(bob, "checkpoint-quorum-phone", full_page=False)

    alice.goto("/")  # the inbox says it too
    row = alice.locator(f'tr[data-checkpoint="{cp["id"]}"]')
    assert "1 of 2 approved: alice" in row.inner_text() and "you voted approve" in row.inner_text()
    alice.wait_for_selector('#live[data-state="live"]')
    shot(alice, "inbox-quorum")

    bob.keyboard.press("a")
    bob.keyboard.press("Enter")
    bob.locator("#result.green", has_text="Approved").wait_for()
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"]["text"].startswith("Draft 1 about quorum in the console")
    row.wait_for(state="detached", timeout=LIVE_S * 1000 + 1000)  # decided: it leaves the open inbox live
    bob.locator(".cp-head", has_text="by bob via console").wait_for(timeout=LIVE_S * 1000 + 1000)
    assert bob.evaluate("window.__noReload")


def test_a_claim_is_seen_live_by_a_second_reviewer_and_reassign_hands_the_seat_on(e2e, open_page):
    register(e2e, assignees=["alice", "bob"])
    run = e2e.start_run("claimed and handed on")
    cp = e2e.wait_open()[0]
    alice = open_page("alice", f"/checkpoints/{cp['id']}")
    bob = open_page("bob", f"/checkpoints/{cp['id']}")
    bob.locator('[data-command="claim"] button').click()
    bob.locator("#result.green", has_text="Claimed").wait_for()
    claim = alice.locator(".cp-head .claim-who")
    claim.wait_for(timeout=LIVE_S * 1000 + 1000)
    assert re.fullmatch(r"Claimed by bob since \d\d:\d\d\s?(AM|PM)? \(your time\)", claim.inner_text()), \
        claim.inner_text()
    assert "bob has claimed this checkpoint" in alice.locator("[data-claim-notice]").inner_text()
    assert alice.locator('details[data-action="approve"] button[type=submit]').is_enabled()  # a soft lock
    assert "Claimed by you" in bob.locator(".cp-head").inner_text()
    shot(alice, "checkpoint-claimed")

    alice.keyboard.press("r")
    alice.keyboard.type("half a thought about the tone")  # then she hands it on instead
    alice.select_option("#reassign-to", "carol")
    alice.fill("#reassign-note", "carol knows this client")
    alice.locator('[data-command="reassign"] button[type=submit]').click()
    alice.locator("#result.green", has_text="Reassigned").wait_for()
    assert "Assignees now: bob, carol" in alice.locator("#result").inner_text()
    bob.locator('[data-assignees]', has_text="carol").wait_for(timeout=LIVE_S * 1000 + 1000)
    assert bob.locator(".cp-head .claim-who").count() == 0  # a reassign ends the claim
    banner = alice.locator('[data-live="decision"] .elsewhere')  # what she typed is kept, sending is off
    banner.wait_for(timeout=LIVE_S * 1000 + 1000)
    assert banner.inner_text().startswith("Changed while you were typing: Assigned to bob, carol; you are not")
    assert alice.locator("textarea#feedback").input_value() == "half a thought about the tone"
    assert alice.locator('details[data-action="revise"] button[type=submit]').is_disabled()
    alice.click("text=Show the page as it is now")
    alice.locator('.decision [data-code="not_assignee"]').wait_for()
    assert "to carol, replacing alice" in alice.locator('[data-live="history"]').inner_text()

    carol = open_page("carol", f"/checkpoints/{cp['id']}")
    carol.keyboard.press("a")
    carol.keyboard.press("Enter")
    carol.locator("#result.green", has_text="Approved").wait_for()
    assert run.result(timeout=60)["data"]["status"] == "succeeded"


def test_a_bulk_preview_then_apply_over_several_checkpoints_with_one_refusal_on_a_phone(e2e, open_page):
    register(e2e)
    runs = [e2e.start_run(f"bulk {i}") for i in range(3)]
    ids = [c["id"] for c in e2e.wait_open(count=3)]
    page = open_page("alice", phone=True, axe=True)
    for cid in ids:
        page.locator(f'tr[data-checkpoint="{cid}"]').wait_for()
    assert sideways_scroll(page) <= 0 and contrast_failures(page) == []
    order = page.evaluate("[...document.querySelectorAll('[data-rows] tbody tr[data-href]')]"
                          ".map(r => r.dataset.checkpoint)")
    current = -1
    for index in sorted(order.index(cid) for cid in ids):  # the keyboard: j moves down a row, x ticks it
        for _ in range(index - current):
            page.keyboard.press("j")
        current = index
        page.keyboard.press("x")
    assert page.locator("[data-bulk-count]").inner_text() == "3 selected"
    page.locator(".bulk-panel > summary").click()
    page.check('input[name="action"][value="approve"]')
    assert sideways_scroll(page) <= 0 and contrast_failures(page) == []
    shot(page, "inbox-bulk-phone", full_page=False)
    page.locator("[data-bulk-preview]").click()
    page.wait_for_url(re.compile(r".*/bulk-decision$"))
    preview = page.locator("[data-preview]")
    assert page.locator("h1").inner_text() == "Approve 3 checkpoints?"
    assert sorted(preview.locator("tr[data-item]").evaluate_all("rows => rows.map(r => r.dataset.item)")) == sorted(ids)
    assert preview.locator("input[name=ids]:checked").count() == 3 and "takes it" in preview.inner_text()
    assert sideways_scroll(page) <= 0 and contrast_failures(page) == []
    shot(page, "bulk-preview-phone", full_page=False)

    e2e.hitl("decide", ids[1], "approve", reviewer_token="rv-bob-token")  # someone else, meanwhile
    page.locator("[data-bulk-go]").click()
    page.locator("[data-results]").wait_for()
    status = {cid: page.locator(f'tr[data-result="{cid}"]').get_attribute("data-status") for cid in ids}
    assert status == {ids[0]: "applied", ids[1]: "refused", ids[2]: "applied"}
    refused = page.locator(f'tr[data-result="{ids[1]}"]').inner_text()
    assert "already_resolved" in refused and "approve by bob via api" in refused
    assert page.locator("[data-counts]").inner_text() == "2 applied · 1 refused"
    assert sideways_scroll(page) <= 0 and contrast_failures(page) == []
    shot(page, "bulk-results-phone", full_page=False)
    for run in runs:
        assert run.result(timeout=60)["data"]["status"] == "succeeded"
