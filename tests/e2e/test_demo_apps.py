"""`make run`'s three demo apps, driven by the very commands it prints (README "Which wait to use"): the
curl through the gateway for each wait — a held HTTP checkpoint, a Dify Human Input form, a detached
checkpoint with its continuation app — decided with the CLI; each run has its node timeline."""
from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from demo.apps import APPS, apps_env, gateway_curl, register_apps
from demo.stack import ProcessStack, free_port
from tests.e2e.harness import E2E, wait_run

pytestmark = pytest.mark.e2e
REVIEWER = {"Authorization": "Bearer rv-alice-token"}


@pytest.fixture
def demo(tmp_path, sqlite_url, rabbitmq_url):
    ports = {name: free_port() for name in ("sim", "ingest", "decider", "poller", "console")}
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, ports=ports,
                      env=apps_env(f"http://127.0.0.1:{ports['sim']}")) as stack:
        register_apps(stack)
        e2e = E2E(stack)
        yield e2e
        e2e.close()


def app(name: str):
    return next(a for a in APPS if a.name == name)


def curl(e2e: E2E, name: str, topic: str, background: bool = False):
    """The printed command, run by a shell; its output is Dify's event stream."""
    command = gateway_curl(e2e.stack, app(name), topic)
    if background:
        return subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, text=True)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    return [json.loads(line[5:]) for line in out.stdout.splitlines() if line.startswith("data:")]


def checkpoint_of(e2e: E2E, app_name: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [c for c in e2e.open_checkpoints() if c["app"] == app_name]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no open checkpoint of {app_name}")


def test_the_held_checkpoint_app_through_the_gateway_has_its_node_timeline(demo):
    streaming = curl(demo, "demo", "release notes", background=True)
    cp = checkpoint_of(demo, "demo")
    demo.decide(cp["id"], "approve")
    streaming.wait(timeout=60)
    run = wait_run(demo.stack, cp["workflow_run_id"], lambda r: r["status"] == "succeeded")
    assert [n["node_id"] for n in run["nodes"]][:3] == ["start", "draft", "checkpoint"]
    assert run["source"] == "gateway" and run["outcome"] == "approved by alice"
    shown = demo.hitl("run-show", run["id"]).stdout
    assert "succeeded · approved by alice" in shown and "published" in shown


def test_the_human_input_app_pauses_holding_nothing_and_an_edit_goes_through(demo):
    events = curl(demo, "longreview", "pricing page")
    assert events[-1]["event"] == "workflow_paused"  # the stream (and the curl) ended: nothing waits on a socket
    cp = checkpoint_of(demo, "longreview")
    assert cp["kind"] == "dify-form" and "pricing page" in cp["form"]["form_content"]
    demo.decide(cp["id"], "edit", "--output", "The corrected draft")
    run = wait_run(demo.stack, cp["workflow_run_id"], lambda r: r["status"] == "succeeded")
    assert run["outputs"] == {"text": "The corrected draft"} and run["outcome"] == "edited by alice"
    assert [n["node_id"] for n in run["nodes"]][:3] == ["start", "draft", "review"]


def test_the_detached_app_answers_pending_and_its_decision_starts_the_continuation(demo):
    events = curl(demo, "handoff", "annual report")
    assert events[-1]["event"] == "workflow_finished" and events[-1]["data"]["status"] == "succeeded"
    assert '"action":"pending"' in events[-1]["data"]["outputs"]["pending"]
    cp = checkpoint_of(demo, "handoff")
    demo.decide(cp["id"], "approve")
    deadline = time.monotonic() + 30
    while True:
        runs = httpx.get(f"{demo.stack.ingest_url}/v1/runs?app=handoff-continue", headers=REVIEWER).json()["runs"]
        done = [r for r in runs if r["continuation_of"] == cp["id"] and r["status"] == "succeeded"]
        if done:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.3)
    assert done[0]["outputs"] == {"result": "Published: Draft about annual report.",
                                  "reviewed_run": cp["workflow_run_id"]}
