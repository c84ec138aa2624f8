"""`hitl instrument` end to end: an exported Dify app is instrumented with the real CLI, its graph runs in
the Dify simulator, and the real processes hold, decide and answer its checkpoints.

The apps: fixture 17's `router.export.yml` (real Dify export; its HTTP desks point at a stub server
of this test instead of 127.0.0.1:19999), and `tests/fixtures/dsl/writer-template.yml` (the
writer-llm export with template nodes standing in for the LLM nodes, which the simulator cannot
run). The simulator has no environment variables: `register` renders `{{#env.NAME#}}` from the DSL's
`environment_variables`, as Dify does before the HTTP node runs.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from demo.stack import APP_TOKEN, DIFY_APP_KEY, ROOT, ProcessStack
from shared.dsl import document
from shared.dsl.document import to_plain
from tests.e2e.harness import E2E, final_run

pytestmark = pytest.mark.e2e
ROUTER = ROOT.parent / "shared" / "dify-fixtures" / "17-dsl-export-import" / "router.export.yml"
WRITER = ROOT / "tests" / "fixtures" / "dsl" / "writer-template.yml"
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}


class Desk(ThreadingHTTPServer):
    """The router app's support/billing desks: answers with the question, and the feedback if sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), DeskHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class DeskHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.calls.append({"path": parts.path, **query})
        text = f"{parts.path.strip('/')} desk on {query.get('topic', '?')}"
        if query.get("hitl_feedback"):
            text += f" (revised after: {query['hitl_feedback']})"  # the reviewer's words (`"answer": "text"`)
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def desk():
    server = Desk()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, rabbitmq_url):
    work = tmp_path_factory.mktemp("instrument")
    env = {"HITL_RESUME_TIMEOUT_S": "3", "HITL_POLL_MAX_INTERVAL_S": "1"}
    with ProcessStack(work, database_url=f"sqlite:///{work / 'hitl.db'}", rabbitmq_url=rabbitmq_url, env=env) as stack:
        harness = E2E(stack)
        yield harness
        harness.close()


def instrument(e2e: E2E, source: Path, *args: str, desk: Desk | None = None) -> document.Document:
    """The real `hitl instrument` on a copy of the export; returns the written DSL."""
    text = source.read_text()
    if desk is not None:
        text = text.replace("http://127.0.0.1:19999", desk.url)
    app = e2e.stack.workdir / f"in-{source.name}"
    out = e2e.stack.workdir / f"out-{source.name}"
    app.write_text(text)
    env = {**e2e.stack.env, "E2E_CP_TOKEN": APP_TOKEN}
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "instrument", str(app), "-o", str(out),
                           "--url", e2e.stack.ingest_url, "--token-env", "E2E_CP_TOKEN", "--timeout-s", "300", *args],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    lint = subprocess.run([sys.executable, "-m", "services.cli.main", "lint", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert lint.returncode == 0, lint.stdout
    return document.load(out.read_text())


def register(e2e: E2E, doc: document.Document) -> None:
    """Publish the DSL's workflow.graph in the simulator, env variables rendered as Dify renders them."""
    values = {v["name"]: v["value"] for v in to_plain(doc.workflow["environment_variables"])}
    graph = json.dumps(doc.plain_graph())
    graph = re.sub(r"\{\{#env\.([A-Za-z0-9_]+)#\}\}", lambda m: values[m.group(1)], graph)
    r = httpx.post(f"{e2e.stack.sim_url}/_sim/apps",
                   json={"name": "demo-review", "graph": json.loads(graph), "api_key": DIFY_APP_KEY})
    r.raise_for_status()


def start(e2e: E2E, inputs: dict[str, str]):
    def run() -> dict[str, Any]:
        r = httpx.post(f"{e2e.stack.sim_url}/v1/workflows/run", headers=DIFY,
                       json={"inputs": inputs, "response_mode": "blocking", "user": "e2e"}, timeout=600)
        return r.json()
    return e2e.pool.submit(run)


def wait_checkpoint(e2e: E2E, predicate, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [c for c in e2e.open_checkpoints() if predicate(c)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no such open checkpoint: " + json.dumps(e2e.open_checkpoints())[:800])


# ---------------------------------------------------------------------- HTTP checkpoint, real export
def test_router_approve_edit_and_abort_reach_their_branches(e2e, desk):
    register(e2e, instrument(e2e, ROUTER, "--after", "Ask support desk", desk=desk))
    runs = {q: start(e2e, {"question": q}) for q in ("approve me", "edit me", "abort me")}
    cps = {q: wait_checkpoint(e2e, lambda c, q=q: c["node_output"] == f"support desk on {q}") for q in runs}
    assert cps["approve me"]["node_id"] == "support" and cps["approve me"]["message"] == "Review Ask support desk"
    e2e.decide(cps["approve me"]["id"], "approve")
    e2e.decide(cps["edit me"]["id"], "edit", "--output", "A hand-written answer.")
    e2e.decide(cps["abort me"]["id"], "abort", "--reason", "spam")

    approved = runs["approve me"].result(timeout=60)["data"]
    assert approved["status"] == "succeeded"
    # end_support reads the reviewed output now: the approved text itself (`"answer": "text"`)
    assert approved["outputs"]["answer"] == "support desk on approve me"
    edited = runs["edit me"].result(timeout=60)["data"]
    assert edited["outputs"]["answer"] == "A hand-written answer."
    aborted = runs["abort me"].result(timeout=60)["data"]
    assert aborted["status"] == "succeeded" and list(aborted["outputs"]) == ["decision"]  # the new Aborted End
    assert aborted["outputs"]["decision"].startswith('{"action":"abort"')


def test_router_revise_asks_the_desk_again_with_the_feedback(e2e, desk):
    register(e2e, instrument(e2e, ROUTER, "--after", "support", "--revise", "--max-rounds", "3", desk=desk))
    run = start(e2e, {"question": "printer"})
    first = wait_checkpoint(e2e, lambda c: c["node_output"] == "support desk on printer" and c["round"] == 1)
    e2e.decide(first["id"], "revise", "--feedback", "mention the driver")
    second = wait_checkpoint(e2e, lambda c: c["workflow_run_id"] == first["workflow_run_id"] and c["round"] == 2)
    assert second["node_output"] == "support desk on printer (revised after: mention the driver)"
    assert [c.get("hitl_feedback", "") == "" for c in desk.calls if c["topic"] == "printer"] == [True, False]
    e2e.decide(second["id"], "approve")
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded"
    assert data["outputs"]["answer"] == second["node_output"]


# ---------------------------------------------------------------------- a template node as the reviewed node
def test_a_revise_loop_re_runs_the_template_with_the_feedback_then_abort_ends_it(e2e):
    register(e2e, instrument(e2e, WRITER, "--after", "Write draft", "--revise"))
    run = start(e2e, {"topic": "pricing"})
    first = wait_checkpoint(e2e, lambda c: c["node_output"] == "Draft about pricing." and c["round"] == 1)
    e2e.decide(first["id"], "revise", "--feedback", "add the enterprise tier")
    second = wait_checkpoint(e2e, lambda c: c["workflow_run_id"] == first["workflow_run_id"] and c["round"] == 2)
    # The reviewer's words themselves reach the node (`"answer": "text"` on the reviewed-output call).
    assert second["node_output"] == "Draft about pricing.\n\nReviewer feedback: add the enterprise tier"
    e2e.decide(second["id"], "abort", "--reason", "not today")
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"]["decision"].startswith('{"action":"abort"')


def test_step_pauses_after_every_node_with_the_variables_so_far(e2e):
    register(e2e, instrument(e2e, WRITER, "--step"))
    run = start(e2e, {"topic": "release notes"})
    after_draft = wait_checkpoint(e2e, lambda c: c["node_id"] == "write_draft")
    assert after_draft["node_output"] == {"start": {"topic": "release notes"},
                                          "write_draft": {"output": "Draft about release notes."}}
    e2e.decide(after_draft["id"], "approve")
    after_polish = wait_checkpoint(e2e, lambda c: c["node_id"] == "polish")
    assert after_polish["node_output"] == {"start": {"topic": "release notes"},
                                           "write_draft": {"output": "Draft about release notes."},
                                           "polish": {"output": "Polished: Draft about release notes."}}
    e2e.decide(after_polish["id"], "approve")
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"] == {"text": "Polished: Draft about release notes."}


# ---------------------------------------------------------------------- Dify's own Human Input node
def gateway_run(e2e: E2E, topic: str) -> str:
    """A blocking run through ingest's gateway: it pauses at the form; the poller captures the form."""
    r = httpx.post(f"{e2e.stack.ingest_url}/v1/workflows/run", headers=DIFY, timeout=30,
                   json={"inputs": {"topic": topic}, "response_mode": "blocking", "user": "editor-1"})
    body = r.json()
    assert body["data"]["status"] == "paused", body
    return body["workflow_run_id"]


def test_human_input_variant_edit_goes_on_with_the_edited_text_revise_and_abort_end(e2e):
    register(e2e, instrument(e2e, WRITER, "--after", "write_draft", "--human-input"))
    edited_run, aborted_run, revised_run = gateway_run(e2e, "launch"), gateway_run(e2e, "spam"), gateway_run(e2e, "faq")
    form = wait_checkpoint(e2e, lambda c: c["workflow_run_id"] == edited_run and c["kind"] == "dify-form")
    assert [a["id"] for a in form["form"]["actions"]] == ["approve", "revise", "abort"]
    e2e.decide(form["id"], "edit", "--output", "A better launch text")
    run = final_run(e2e.stack, edited_run)
    assert run["status"] == "succeeded"
    assert run["outputs"] == {"text": "Polished: A better launch text"}  # polish reads the form's paragraph
    other = wait_checkpoint(e2e, lambda c: c["workflow_run_id"] == aborted_run and c["kind"] == "dify-form")
    e2e.decide(other["id"], "abort")
    run = final_run(e2e.stack, aborted_run)
    assert run["status"] == "succeeded" and run["outputs"] == {"action": "abort"}
    third = wait_checkpoint(e2e, lambda c: c["workflow_run_id"] == revised_run and c["kind"] == "dify-form")
    e2e.decide(third["id"], "revise", "--input", "edited=Shorter, please")
    run = final_run(e2e.stack, revised_run)
    assert run["status"] == "succeeded" and run["outputs"] == {"feedback": "Shorter, please"}
