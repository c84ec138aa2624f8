"""The review console in a real browser (Debian's headless Chromium driven by Playwright) against the real
processes, the real RabbitMQ and the Dify simulator: sign-in, live inbox, deciding from the page,
round 2 with a diff, JSON edits, assignees, CSRF, and a decision taken elsewhere.

One stack and one browser for the module (keeps it well under 90 s); each test resolves the
checkpoints it opens. Screenshots land in tests/e2e/screenshots/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from demo.stack import REVIEWERS, ROOT, ProcessStack, free_port
from shared.passwords import hash_password
from tests.conftest import _fresh_postgres_db
from tests.e2e.harness import E2E, node

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent / "screenshots"
NODE_DIR = Path(__file__).resolve().parent / "node"  # package.json + lock: oidc-provider, axe-core
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
ALICE_PASSWORD = "correct horse battery"
REVIEWER = {"Authorization": "Bearer rv-alice-token"}
LIVE_S = 1.5  # "within a second", plus the browser's own scheduling


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def stack(tmp_path_factory, rabbitmq_url):
    """PostgreSQL when DATABASE_URL names a server (as in CI: the store several console replicas share),
    else a SQLite file; the unit tests cover the console's reads on SQLite."""
    work = tmp_path_factory.mktemp("console")
    database_url, drop = f"sqlite:///{work / 'hitl.db'}", None
    if os.environ.get("DATABASE_URL"):
        database_url, drop = _fresh_postgres_db(os.environ["DATABASE_URL"])
    try:
        with ProcessStack(work, database_url=database_url, rabbitmq_url=rabbitmq_url,
                          env={"HITL_POLL_MAX_INTERVAL_S": "2"}) as stack:
            start_console(stack)
            yield stack
    finally:
        if drop:
            drop()


def start_console(stack: ProcessStack, extra_env: dict[str, str] | None = None) -> None:
    """`python -m services.console` with the stack's environment, on its own port; alice has a password."""
    reviewers = [dict(r, password_hash=hash_password(ALICE_PASSWORD, iterations=20_000)) if r["name"] == "alice" else r
                 for r in REVIEWERS]
    stack.ports["console"] = free_port()
    env = {**stack.env, "HITL_CONSOLE_PORT": str(stack.ports["console"]), "HITL_REVIEWERS": json.dumps(reviewers),
           "HITL_CONSOLE_SECRET": "e2e-console-secret-0123456789",
           "HITL_CONSOLE_DIFY_WEB_URL": "https://dify.example.internal", **(extra_env or {})}
    log = open(stack.workdir / "console.log", "ab")  # noqa: SIM115  (the process writes it for its whole life)
    stack.procs["console"] = subprocess.Popen([sys.executable, "-m", "services.console"], cwd=ROOT, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stack.wait_http(stack.url("console") + "/readyz", "console")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def e2e(stack):
    harness = E2E(stack)
    yield harness
    harness.close()


@pytest.fixture
def open_page(browser, stack):
    """open_page(name, password, path) → a signed-in page (its own browser context: its own cookies);
    phone=True: a 390 px touch screen; axe=True: the page may inject axe-core (CSP bypassed)."""
    contexts = []

    def make(name: str = "alice", password: str = ALICE_PASSWORD, path: str = "/", phone: bool = False,
             axe: bool = False, timezone: str | None = None):
        shape = PHONE if phone else {"viewport": {"width": 1280, "height": 900}}
        context = browser.new_context(**shape, base_url=stack.url("console"), bypass_csp=axe,
                                      **({"timezone_id": timezone} if timezone else {}))
        local_only(context)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, name, password)
        if path != "/":
            page.goto(path)
        page.wait_for_selector('#live[data-state="live"]')
        page.evaluate("window.__noReload = true")
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page, name: str, password: str) -> None:
    page.goto("/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


# ---------------------------------------------------------------------- helpers
def start_run(stack: ProcessStack, topic: str) -> str:
    """A run started through ingest (streamed: its node events are recorded)."""
    r = httpx.post(stack.ingest_url + "/v1/runs", headers=REVIEWER, timeout=30,
                   json={"app": "demo", "inputs": {"topic": topic}, "user": "e2e"})
    assert r.status_code == 201, r.text
    return r.json()["workflow_run_id"]


def wait_checkpoint(stack: ProcessStack, run_id: str, round_: int = 1, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = httpx.get(stack.ingest_url + f"/v1/checkpoints?status=open&run_id={run_id}", headers=REVIEWER).json()
        found = [c for c in rows["checkpoints"] if c["round"] == round_]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no open round-{round_} checkpoint for run {run_id}")


def wait_run_status(stack: ProcessStack, run_id: str, status: str, timeout_s: float = 20) -> dict:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        last = httpx.get(stack.ingest_url + f"/v1/runs/{run_id}", headers=REVIEWER).json()
        if last.get("status") == status:
            return last
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never {status}; last: {json.dumps(last)[:600]}")


def shot(page, name: str, full_page: bool = True) -> None:
    """A screenshot in tests/e2e/screenshots. Phones: the screen as it is (a full-page capture drops the
    touch emulation, so touch-only rules would not show)."""
    SHOTS.mkdir(exist_ok=True)
    page.wait_for_timeout(150)  # let a live swap finish painting
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page, animations="disabled")


def local_only(context) -> None:
    """Nothing leaves the machine: a request to any host but this one (a page's web font) is aborted."""
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())


def node_modules() -> Path:
    """tests/e2e/node's packages, installed from the committed lock file (npm ci) when missing."""
    wanted = [NODE_DIR / "node_modules" / "axe-core" / "axe.min.js", NODE_DIR / "node_modules" / "oidc-provider"]
    if not all(p.exists() for p in wanted):
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (apt-get install -y npm)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True, timeout=600)
    return NODE_DIR / "node_modules"


def contrast_failures(page) -> list[str]:
    """axe-core's WCAG AA colour-contrast rule (4.5:1 for text) on the page as it is now."""
    if not page.evaluate("!!window.axe"):
        page.add_script_tag(path=str(node_modules() / "axe-core" / "axe.min.js"))
    violations = page.evaluate("""async () => (await axe.run(document, {runOnly: {type: "rule",
        values: ["color-contrast"]}, resultTypes: ["violations"]})).violations""")
    return [f"{n['target']}: {n['failureSummary']}" for v in violations for n in v["nodes"]]


def sideways_scroll(page) -> int:
    """How many pixels the page scrolls sideways (0: it fits)."""
    return page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - innerWidth")


def post_decision(page, checkpoint_id: str, body: dict, *, csrf: bool = True, form: bool = False) -> tuple[int, dict]:
    """A decision posted from inside the signed-in page (its cookies), with or without the CSRF token."""
    return page.evaluate("""async ([id, body, csrf, form]) => {
        const headers = {Accept: "application/json"};
        if (csrf) headers["X-CSRF-Token"] = document.querySelector('meta[name="csrf-token"]').content;
        headers["Content-Type"] = form ? "application/x-www-form-urlencoded" : "application/json";
        const r = await fetch(`/checkpoints/${id}/decision`, {method: "POST", headers,
            body: form ? new URLSearchParams(body).toString() : JSON.stringify(body)});
        return [r.status, await r.json().catch(() => ({}))];
    }""", [checkpoint_id, body, csrf, form])


def json_output_graph(graph: dict) -> None:
    """The checkpoint sends a JSON object as node output, and only alice may decide."""
    item = node(graph, "checkpoint")["data"]["body"]["data"][0]
    item["value"] = item["value"].replace(
        '"node_output": "{{#draft.output#}}"',
        '"node_output": {"title": "{{#start.topic#}}", "draft": "{{#draft.output#}}", "tags": ["launch", "blog"], '
        '"meta": {"words": 6, "approved_before": false}}').replace('"on_timeout": "abort"',
                                                                   '"on_timeout": "abort", "assignees": ["alice"]')


# ---------------------------------------------------------------------- tests
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


def test_a_run_reaching_a_checkpoint_appears_in_an_open_inbox_without_reload(stack, e2e, open_page):
    e2e.register()
    page = open_page()
    topics = ["release notes", "pricing page", "onboarding email"]
    runs = [start_run(stack, topic) for topic in topics]
    row = page.locator("tr[data-checkpoint]", has_text="Review the draft about onboarding email")
    row.wait_for()
    page.wait_for_function("document.querySelectorAll('tr[data-checkpoint]').length >= 3")
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
    other_tab = open_page("bob", "rv-bob-token", f"/checkpoints/{cp['id']}")
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
    run_page.wait_for_function("!document.querySelector('.tl:not(.green)')")
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
    started = time.monotonic()
    e2e.decide(second["id"], "approve")  # through the HTTP API, by the CLI
    page.locator(".cp-head", has_text="via api").wait_for(timeout=LIVE_S * 1000 + 1000)
    assert time.monotonic() - started < 2.5
    assert page.evaluate("window.__noReload") is True
    assert "cli" in page.locator('[data-live="history"]').inner_text()
    wait_run_status(stack, run_id, "succeeded")


def test_edit_refuses_invalid_json_with_a_message_and_sends_valid_json(stack, e2e, open_page):
    e2e.register(json_output_graph)
    run_id = start_run(stack, "launch post")
    cp = wait_checkpoint(stack, run_id)
    assert cp["node_output"]["tags"] == ["launch", "blog"]

    bob = open_page("bob", "rv-bob-token", f"/checkpoints/{cp['id']}")
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
