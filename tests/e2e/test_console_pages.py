"""Signing in to the review console and the pages a reviewer reads, in a real browser (Debian's headless
Chromium driven by Playwright) against the real processes, RabbitMQ and the Dify simulator: sign-in and
sign-out, every page on a 390 px phone with AA contrast, the context of a checkpoint in the reviewer's
own time zone, and the decided checkpoints searched. Deciding from the page: test_console.py.

One stack and one browser for the module; each test resolves the checkpoints it opens.
"""
from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.console_support import (
    ALICE_PASSWORD,
    PHONE,
    contrast_failures,
    local_only,
    shot,
    sideways_scroll,
    sign_in,
    start_run,
    wait_checkpoint,
    wait_run_status,
)

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")


def test_sign_in_is_required_and_a_wrong_password_is_refused(stack, browser):
    console = stack.url("console")
    assert httpx.get(console + "/").status_code == 303
    assert httpx.get(console + "/").headers["location"].startswith("/login")
    assert httpx.get(console + "/runs/x").headers["location"].startswith("/login")
    events = httpx.get(console + "/events")
    assert events.status_code == 401 and events.json()["error"]["code"] == "unauthorized"
    assert httpx.post(console + "/checkpoints/x/decision", json={"action": "approve"}).status_code == 401
    assert httpx.get(console + "/healthz").status_code == 200

    context = browser.new_context(base_url=console)
    page = context.new_page()
    page.goto("/runs")
    assert "/login" in page.url
    page.fill("#name", "alice")
    page.fill("#password", "not her password")
    page.click("button[type=submit]")
    assert page.locator(".alert").inner_text() == "Wrong name or password."
    assert "/login" in page.url and context.cookies() and all(c["name"] != "hitl_console" for c in context.cookies())
    page.fill("#password", ALICE_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs$"))  # back where she was going
    cookie = next(c for c in context.cookies() if c["name"] == "hitl_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/login\?signed_out=1$"))
    assert page.locator(".alert.green").inner_text() == "You are signed out."
    page.goto("/")
    assert "/login" in page.url
    replayed = httpx.get(console + "/api/session", cookies={"hitl_console": cookie["value"]})
    assert replayed.status_code == 401  # the session was revoked in the store, not only forgotten here
    sign_in(page, "bob", "rv-bob-token")  # a reviewer token works as the password
    assert page.locator(".who").inner_text() == "bob"
    context.close()

def test_every_page_fits_a_390px_phone_and_every_text_passes_aa_contrast(stack, e2e, open_page, browser):
    e2e.register()
    done_run = start_run(stack, "decided on a phone")
    done = wait_checkpoint(stack, done_run)
    e2e.decide(done["id"], "revise", "--feedback", "a shorter intro, please")
    open_run = start_run(stack, "open on a phone")
    cp = wait_checkpoint(stack, open_run)
    paths = ["/", "/?status=decided", "/?status=all&q=phone", f"/checkpoints/{cp['id']}",
             f"/checkpoints/{done['id']}", "/runs", f"/runs/{open_run}", "/nowhere"]
    for phone in (True, False):
        page = open_page(phone=phone, axe=True)
        for path in paths:
            page.goto(path)
            page.wait_for_timeout(100)
            assert sideways_scroll(page) <= 0, (phone, path)
            assert contrast_failures(page) == [], (phone, path)
            if phone and path == f"/checkpoints/{cp['id']}":
                shot(page, "checkpoint-phone", full_page=False)
                assert page.locator(".foot").is_hidden()  # no keyboard hints on a touch screen
                decide_y = page.locator("section.decision").bounding_box()["y"]
                assert decide_y < page.locator('section[data-live="output"]').bounding_box()["y"]
                assert page.locator(".cp-head .countdown").bounding_box()["y"] < decide_y
                assert page.locator(".who").is_visible()
            if phone and path == "/":
                shot(page, "inbox-phone", full_page=False)
                assert page.locator("table.inbox thead").is_hidden()  # rows are cards
    login = browser.new_context(**PHONE, base_url=stack.url("console"), bypass_csp=True)
    local_only(login)
    login_page = login.new_page()
    login_page.goto("/login")
    assert sideways_scroll(login_page) <= 0 and contrast_failures(login_page) == []
    login.close()
    e2e.decide(cp["id"], "abort", "--reason", "cleaning up")

def test_the_checkpoint_page_shows_the_context_to_decide_in_the_reviewers_time(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "context matters")
    cp = wait_checkpoint(stack, run_id)
    page = open_page(path=f"/checkpoints/{cp['id']}", timezone="Asia/Tokyo")
    facts = page.locator('[data-live="cp-facts"]')
    assert "Write draft" in facts.inner_text() or "Human checkpoint" in facts.inner_text()  # the node's title
    assert "e2e (Dify user)" in facts.inner_text()
    link = page.locator("[data-dify-link]").get_attribute("href")
    assert link == f"https://dify.example.internal/app/{cp['app_id']}/logs"
    opened = facts.locator("time[data-local]").first
    assert re.search(r"GMT\+9", opened.inner_text()), opened.inner_text()  # the reviewer's own time zone
    assert opened.get_attribute("title").endswith(" UTC")
    inputs = page.locator('[data-live="run-inputs"]').inner_text()
    assert "topic" in inputs and "context matters" in inputs
    shot(page, "checkpoint-context")
    e2e.decide(cp["id"], "approve")
    wait_run_status(stack, run_id, "succeeded")

def test_decided_checkpoints_can_be_browsed_searched_and_paged(stack, e2e, open_page):
    e2e.register()
    run_id = start_run(stack, "look back later")
    cp = wait_checkpoint(stack, run_id)
    e2e.decide(cp["id"], "approve")
    wait_run_status(stack, run_id, "succeeded")
    page = open_page(path="/?status=decided")
    row = page.locator(f'tr[data-checkpoint="{cp["id"]}"]')
    assert "alice" in row.locator('td[data-label="Decided by"]').inner_text()
    assert row.locator('td[data-label="Decided at"] time').count() == 1
    page.fill("input[data-search]", run_id)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=.*"))
    assert page.locator("tr[data-checkpoint]").count() == 1
    assert page.locator(".count-line").inner_text().startswith("1 decided")
    shot(page, "inbox-decided")
    page.keyboard.press("/")  # the search shortcut
    assert page.evaluate("document.activeElement.matches('[data-search]')")
