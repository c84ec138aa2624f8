"""Sign-in with OpenID Connect against a real provider: the certified `oidc-provider` package (npm,
tests/e2e/node), started by this module on 127.0.0.1, and the real console process on the real store
and RabbitMQ, driven in Debian's headless Chromium. Discovery, login (authorization code + PKCE),
the token exchange, groups mapped to a grant, logout at both ends, an expired session, and a code
issued to another application refused.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import update

from demo.stack import APP_TOKEN, ProcessStack, free_port
from shared.store import Database
from shared.store import checkpoints as cp_store
from shared.store.tables import console_sessions
from tests.conftest import _fresh_postgres_db
from tests.e2e.console_support import NODE_DIR, local_only, node_modules, shot

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")

CLIENT_ID, CLIENT_SECRET = "hitl-console", "hitl-console-secret"
ACCOUNTS = {"alice": {"groups": ["hitl-legal", "everyone"]}, "zoe": {"groups": ["hitl-legal"]}}


@pytest.fixture(scope="module")
def provider_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def console(tmp_path_factory, rabbitmq_url, provider_port):
    """The provider, then a console process configured for it (and nothing else: no decider is needed
    to sign in). alice is also in HITL_REVIEWERS; zoe exists only at the provider."""
    node_modules()
    work = tmp_path_factory.mktemp("console-oidc")
    database_url, drop = f"sqlite:///{work / 'hitl.db'}", None
    if os.environ.get("DATABASE_URL"):
        database_url, drop = _fresh_postgres_db(os.environ["DATABASE_URL"])
    console_port = free_port()
    base = f"http://127.0.0.1:{console_port}"
    log = open(work / "oidc-provider.log", "ab")  # noqa: SIM115  (the provider writes it for its whole life)
    provider = subprocess.Popen(
        ["node", "oidc_provider.mjs"], cwd=NODE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OIDC_PORT": str(provider_port), "OIDC_ACCOUNTS": json.dumps(ACCOUNTS),
             "OIDC_REDIRECT_URIS": f"{base}/login/oidc/callback",
             "OIDC_POST_LOGOUT_URIS": f"{base}/login?signed_out=1"})
    env = {
        "HITL_APPS": json.dumps([{"name": "demo", "checkpoint_token": APP_TOKEN},
                                 {"name": "contracts", "checkpoint_token": "contracts-app-token"}]),
        "HITL_GROUPS": json.dumps([{"name": "legal", "apps": ["contracts"]}]),
        "HITL_REVIEWERS": json.dumps([{"name": "alice", "token": "rv-alice-token", "apps": ["demo"]}]),
        "HITL_BOTS": "[]",
        "HITL_CONSOLE_OIDC_ISSUER": f"http://127.0.0.1:{provider_port}",
        "HITL_CONSOLE_OIDC_CLIENT_ID": CLIENT_ID, "HITL_CONSOLE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "HITL_CONSOLE_OIDC_SCOPES": "openid profile groups",
        "HITL_CONSOLE_OIDC_GROUPS_MAP": json.dumps({"hitl-legal": "legal"}),
        "HITL_CONSOLE_OIDC_LABEL": "Example SSO",
    }
    stack = ProcessStack(work, database_url=database_url, rabbitmq_url=rabbitmq_url, env=env,
                         ports={"console": console_port})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{provider_port}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or provider.poll() is not None:
                raise RuntimeError((work / "oidc-provider.log").read_text())
            time.sleep(0.2)
        stack.start("decider")  # decisions of people signed in with the provider are applied
        stack.start("console")
        yield stack, Database(database_url)
    finally:
        stack.stop_all()
        stack.delete_broker_objects()
        provider.terminate()
        provider.wait(timeout=10)
        if drop:
            drop()


@pytest.fixture
def page(console, browser):  # the stack first: it is torn down after the browser
    stack, _ = console
    context = browser.new_context(base_url=stack.url("console"), viewport={"width": 1100, "height": 800})
    local_only(context)  # the provider's pages link a web font: nothing leaves the machine
    p = context.new_page()
    p.set_default_timeout(10_000)
    yield p
    context.close()


def provider_login(page, name: str) -> None:
    """The provider's own login and consent pages (its development interactions: any password)."""
    page.wait_for_selector('input[name="login"]')
    page.fill('input[name="login"]', name)
    page.fill('input[name="password"]', "any password")
    page.click("button.login-submit")
    page.wait_for_load_state()
    if page.locator('input[name="prompt"][value="consent"]').count():
        page.click("button.login-submit")


def sign_in_with_sso(page, name: str = "alice") -> list[str]:
    """Sign in through the provider; the URLs the browser asked for on the way."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.goto("/login")
    page.click("a[data-oidc]")
    provider_login(page, name)
    page.wait_for_url(re.compile(r".*/$"))
    return seen


def add_checkpoint(db: Database, app: str) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    with db.write() as conn:
        cp_store.insert_if_absent(conn, dict(
            id=cid, app=app, kind="http", workflow_run_id=f"run-{app}-{cid[:6]}", node_id="clause", round=1,
            status="open", mode="hold", message=f"Review the {app} clause", node_output="Clause 7.", timeout_s=3600,
            deadline=now + 3600, on_timeout="abort", assignees=[], max_rounds=3, created_at=now, updated_at=now))
    return cid


def test_discovery_login_with_pkce_and_the_token_exchange_sign_alice_in_with_her_groups(page, console, provider_port):
    stack, db = console
    contract = add_checkpoint(db, "contracts")
    page.goto("/login")
    assert page.locator("a[data-oidc]").inner_text() == "Sign in with Example SSO"
    shot(page, "login-sso")
    seen = sign_in_with_sso(page)
    authorize = next(u for u in seen if u.startswith(f"http://127.0.0.1:{provider_port}/auth?"))
    query = parse_qs(urlparse(authorize).query)  # the endpoint came from the discovery document
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["scope"] == ["openid profile groups"] and query["nonce"] and query["state"]
    assert any("/login/oidc/callback?code=" in u for u in seen)
    assert page.locator(".who").inner_text() == "alice"
    me = page.evaluate("fetch('/api/session').then(r => r.json())")
    assert me["method"] == "oidc" and me["configured"] is True
    assert me["groups"] == ["legal"]  # hitl-legal mapped, "everyone" not in the map: dropped
    # the group grants the app "contracts": its checkpoint is in her inbox, with what the decider would say
    row = page.locator(f'tr[data-checkpoint="{contract}"]')
    assert "Review the contracts clause" in row.inner_text()
    page.goto(f"/checkpoints/{contract}")
    assert not page.locator('details[data-action="approve"] button[type=submit]').is_disabled()


def decide_approve(page) -> None:
    page.locator('details[data-action="approve"] summary').click()
    page.locator('details[data-action="approve"] button[type=submit]').click()
    page.wait_for_load_state()


def test_someone_only_the_provider_knows_decides_with_the_apps_their_groups_grant(page, console):
    _, db = console
    contract = add_checkpoint(db, "contracts")
    demo = add_checkpoint(db, "demo")
    sign_in_with_sso(page, "zoe")  # not in HITL_REVIEWERS; the provider says she is in hitl-legal
    inbox = page.locator("[data-live=inbox-list]").inner_text()
    assert "contracts" in inbox and "Review the demo clause" not in inbox
    assert page.goto(f"/checkpoints/{contract}").status == 200
    assert page.goto(f"/checkpoints/{demo}").status == 404
    page.goto(f"/checkpoints/{contract}")
    decide_approve(page)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.read() as conn:
            row = cp_store.get(conn, contract)
        if row["status"] != "open":
            break
        time.sleep(0.2)
    assert (row["status"], row["decided_by"], row["decision_channel"]) == ("resolved", "zoe", "console")


def test_sign_out_revokes_the_session_here_and_ends_it_at_the_provider(page, console, provider_port):
    stack, _ = console
    sign_in_with_sso(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "hitl_console")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{provider_port}/session/end.*"))
    page.click('button[name="logout"]')  # the provider asks, as providers do
    page.wait_for_url(re.compile(r".*/login\?signed_out=1$"))
    assert page.locator(".alert.green").inner_text() == "You are signed out."
    replayed = httpx.get(stack.url("console") + "/api/session", cookies={"hitl_console": cookie["value"]})
    assert replayed.status_code == 401  # revoked in the store, not just deleted from this browser
    page.click("a[data-oidc]")  # the provider's session ended too: it asks who you are again
    page.wait_for_selector('input[name="login"]')


def test_an_expired_session_sends_the_reviewer_back_to_sign_in(page, console):
    _, db = console
    sign_in_with_sso(page)
    # Leave the inbox first: its live refresh would otherwise see the 401 and send the browser to
    # /login?next=%2F while we navigate, racing the redirect this test is about.
    page.goto("about:blank")
    with db.write() as conn:
        conn.execute(update(console_sessions).where(console_sessions.c.reviewer == "alice")
                     .values(expires_at=time.time() - 1))
    page.goto("/runs")
    assert "/login?next=%2Fruns" in page.url


def test_a_code_issued_to_another_application_is_refused(page, console):
    """A code (and so an ID token) whose audience is "other-app", delivered to the console's callback
    with the console's own state: the provider refuses to exchange it for our client."""
    start = page.request.get("/login/oidc", max_redirects=0)  # the context's cookie jar keeps the state
    assert start.status == 303 and f"client_id={CLIENT_ID}" in start.headers["location"]
    page.goto(start.headers["location"].replace(f"client_id={CLIENT_ID}", "client_id=other-app"))
    provider_login(page, "alice")
    page.wait_for_url(re.compile(r".*/login/oidc/callback\?.*"))
    assert page.locator(".alert.red").inner_text().startswith("The identity provider refused the sign-in")
    assert all(c["name"] != "hitl_console" for c in page.context.cookies())
    shot(page, "login-sso-refused")
