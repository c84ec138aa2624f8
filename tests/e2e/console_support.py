"""What the browser tests of the review console share: the console process on a stack, the store it runs
on, signing in, waiting for checkpoints and runs through ingest, screenshots, and the page checks (no
sideways scroll, axe-core's AA contrast). The fixtures built on these are in tests/e2e/conftest.py."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.stack import REVIEWERS, ROOT, ProcessStack, free_port
from shared.passwords import hash_password
from tests.conftest import _fresh_postgres_db
from tests.e2e.harness import wait_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent / "screenshots"
NODE_DIR = Path(__file__).resolve().parent / "node"  # package.json + lock: oidc-provider, axe-core
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
ALICE_PASSWORD = "correct horse battery"
REVIEWER = {"Authorization": "Bearer rv-alice-token"}
LIVE_S = 1.5  # "within a second", plus the browser's own scheduling


def password_of(name: str) -> str:
    """alice has a password (start_console); anyone else signs in with their reviewer token, which works as one."""
    return ALICE_PASSWORD if name == "alice" else f"rv-{name}-token"


# ---------------------------------------------------------------------- processes
@contextlib.contextmanager
def console_store(work: Path) -> Iterator[str]:
    """The database URL the console's stack runs on: a fresh PostgreSQL database when DATABASE_URL names a
    server (as in CI: the store several console replicas share), dropped after; else a SQLite file."""
    if not os.environ.get("DATABASE_URL"):
        yield f"sqlite:///{work / 'hitl.db'}"
        return
    database_url, drop = _fresh_postgres_db(os.environ["DATABASE_URL"])
    try:
        yield database_url
    finally:
        drop()


def start_console(stack: ProcessStack, extra_env: dict[str, str] | None = None,
                  reviewers: list[dict] = REVIEWERS) -> None:
    """`python -m services.console` with the stack's environment and `reviewers` (the demo's by default), on
    its own port; alice has a password."""
    reviewers = [dict(r, password_hash=hash_password(ALICE_PASSWORD, iterations=20_000)) if r["name"] == "alice" else r
                 for r in reviewers]
    stack.ports["console"] = free_port()
    env = {**stack.env, "HITL_CONSOLE_PORT": str(stack.ports["console"]), "HITL_REVIEWERS": json.dumps(reviewers),
           "HITL_CONSOLE_SECRET": "e2e-console-secret-0123456789",
           "HITL_CONSOLE_DIFY_WEB_URL": "https://dify.example.internal", **(extra_env or {})}
    with open(stack.workdir / "console.log", "ab") as log:  # the process keeps its own copy of the descriptor
        stack.procs["console"] = subprocess.Popen([sys.executable, "-m", "services.console"], cwd=ROOT, env=env,
                                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stack.wait_http(stack.url("console") + "/readyz", "console")


@contextlib.contextmanager
def demo_console(work: Path, rabbitmq_url: str) -> Iterator[ProcessStack]:
    """The demo processes and a console on console_store(work): one for a test module."""
    with console_store(work) as database_url, ProcessStack(work, database_url=database_url, rabbitmq_url=rabbitmq_url,
                                                           env={"HITL_POLL_MAX_INTERVAL_S": "2"}) as stack:
        start_console(stack)
        yield stack


# ---------------------------------------------------------------------- through ingest
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
    return wait_run(stack, run_id, lambda run: run.get("status") == status, timeout_s)


# ---------------------------------------------------------------------- in the browser
def sign_in(page, name: str, password: str) -> None:
    page.goto("/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


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
