"""Dify's native Human Input node in the same inbox: captured through the gateway, decided with the
CLI, submitted by the poller, and the resume verified — against the simulator (fixture 09's graph)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from demo.stack import APP_TOKEN, DIFY_APP_KEY, ProcessStack
from shared.broker import Broker
from shared.models import FormDelivery
from shared.topology import FORM_DELIVER, Names, build_topology
from tests.e2e.harness import E2E, final_run, logs

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "09-human-input-streaming" / "graph.json"
REVIEWER = {"Authorization": "Bearer rv-alice-token"}
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}


@pytest.fixture
def e2e(tmp_path, sqlite_url, rabbitmq_url):
    env = {"HITL_RESUME_TIMEOUT_S": "3", "HITL_POLL_MAX_INTERVAL_S": "1"}
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, env=env) as stack:
        r = httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": "forms", "graph": json.loads(FIXTURE.read_text()),
                                                           "api_key": DIFY_APP_KEY})
        r.raise_for_status()
        harness = E2E(stack)
        yield harness
        harness.close()


def gateway_run(e2e: E2E, topic: str, mode: str = "streaming") -> dict:
    """A run through the gateway (ingest), as a Dify client that only changed its base URL."""
    body = {"inputs": {"topic": topic}, "response_mode": mode, "user": "editor-1"}
    if mode == "blocking":
        return httpx.post(f"{e2e.stack.ingest_url}/v1/workflows/run", headers=DIFY, json=body, timeout=30).json()
    with httpx.stream("POST", f"{e2e.stack.ingest_url}/v1/workflows/run", headers=DIFY, json=body, timeout=30) as r:
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    return {"events": events, "workflow_run_id": events[0]["workflow_run_id"]}


def form_checkpoint(e2e: E2E, run_id: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for cp in e2e.open_checkpoints():
            if cp["workflow_run_id"] == run_id and cp["kind"] == "dify-form":
                return cp
        time.sleep(0.2)
    raise AssertionError(f"no form checkpoint for {run_id}")


def checkpoint(e2e: E2E, cp_id: str) -> dict:
    return httpx.get(f"{e2e.stack.ingest_url}/v1/checkpoints/{cp_id}", headers=REVIEWER).json()


def wait_checkpoint(e2e: E2E, cp_id: str, predicate, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cp = checkpoint(e2e, cp_id)
        if predicate(cp):
            return cp
        time.sleep(0.2)
    raise AssertionError(f"checkpoint {cp_id} never matched: {json.dumps(cp)[:600]}")


def test_a_paused_gateway_run_is_decided_with_an_action_and_resumes_down_its_branch(e2e):
    started = gateway_run(e2e, "Press release")
    assert started["events"][-1]["event"] == "workflow_paused"
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    assert [a["id"] for a in cp["form"]["actions"]] == ["approve", "revise", "abort"]
    assert "secret" not in cp and "form_token" not in json.dumps(cp)
    out = e2e.hitl("decide", cp["id"], "revise", "--input", "edited=Needs a quote")
    assert out.returncode == 0, out.stderr
    run = final_run(e2e.stack, started["workflow_run_id"])
    assert run["status"] == "succeeded"
    assert run["outputs"]["action_id"] == "revise" and run["outputs"]["edited"] == "Needs a quote"
    done = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed")
    assert [h["kind"] for h in done["history"]] == ["captured", "decision", "delivered", "resumed"]


def test_edit_puts_the_edited_text_in_the_paragraph_input(e2e):
    started = gateway_run(e2e, "Launch", mode="blocking")
    assert started["data"]["status"] == "paused"
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    e2e.decide(cp["id"], "edit", "--output", "A better launch text")
    run = final_run(e2e.stack, started["workflow_run_id"])
    assert (run["outputs"]["action_id"], run["outputs"]["edited"]) == ("approve", "A better launch text")


def test_unknown_actions_and_missing_inputs_are_refused_before_anything_is_sent(e2e):
    started = gateway_run(e2e, "x")
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    bad = e2e.hitl("decide", cp["id"], "approve", "--action", "publish_now")
    assert bad.returncode == 1 and "unknown_action" in bad.stderr
    missing = e2e.hitl("decide", cp["id"], "approve", "--input", "edited=")
    assert missing.returncode == 1 and "missing_inputs" in missing.stderr
    assert checkpoint(e2e, cp["id"])["status"] == "open"


def test_a_second_decision_gets_409_and_a_duplicate_delivery_is_harmless(e2e):
    started = gateway_run(e2e, "twice")
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    e2e.decide(cp["id"], "approve")
    second = e2e.hitl("decide", cp["id"], "abort")
    assert second.returncode == 1 and "already_resolved" in second.stderr
    before = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed")
    # The same delivery again (at-least-once): Dify answers 412 submitted; nothing changes.
    token = next(e for e in started["events"] if e["event"] == "human_input_required")["data"]["form_token"]
    again = FormDelivery(checkpoint_id=cp["id"], app="demo", workflow_run_id=started["workflow_run_id"],
                         form_token=token, action="approve", inputs={"edited": "twice"}, user="editor-1")
    asyncio.run(publish(e2e.stack, FORM_DELIVER, again.to_bytes()))
    time.sleep(2)
    after = checkpoint(e2e, cp["id"])
    assert (after["delivery"], len(after["history"])) == ("resumed", len(before["history"]))
    assert final_run(e2e.stack, started["workflow_run_id"])["outputs"]["action_id"] == "approve"


async def publish(stack: ProcessStack, routing_key: str, body: bytes) -> None:
    names = Names(stack.env["HITL_NAMESPACE"])
    broker = Broker(stack.env["HITL_RABBITMQ_URL"], name="test", topology=build_topology(names))
    await broker.start()
    await broker.publish(names.commands, routing_key, body)
    await broker.close()


def test_resume_lost_raises_resume_stuck(e2e):
    httpx.post(f"{e2e.stack.sim_url}/_sim/faults", json={"resume_lost": True}).raise_for_status()
    started = gateway_run(e2e, "lost")
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    e2e.decide(cp["id"], "approve")
    stuck = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resume_stuck")
    assert stuck["history"][-1]["kind"] == "resume_stuck"
    assert "hitl_resume_stuck_total" in httpx.get(f"{e2e.stack.decider_url}/metrics").text
    shown = e2e.hitl("show", cp["id"]).stdout
    assert "resume_stuck" in shown


def test_a_resume_that_ends_stopped_after_approve_is_flagged(e2e):
    httpx.post(f"{e2e.stack.sim_url}/_sim/faults", json={"resume_ends_stopped": True}).raise_for_status()
    started = gateway_run(e2e, "stopped")
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    e2e.decide(cp["id"], "approve")
    flagged = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed_as_stopped")
    assert flagged["status"] == "resolved"


def test_a_submit_after_a_stop_during_the_pause_is_resume_unconfirmed_never_resumed(e2e):
    # Somebody stops the paused run in Dify: Dify only raises a flag; our submit then leaves the run's
    # record `running` for ever with nothing moving (fixture 11) — that must not read as resumed.
    started = gateway_run(e2e, "stopped in dify")
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    task_id = started["events"][0]["task_id"]
    stop = httpx.post(f"{e2e.stack.sim_url}/v1/workflows/tasks/{task_id}/stop", headers=DIFY,
                      json={"user": "editor-1"}, timeout=10)
    assert stop.json() == {"result": "success"}
    e2e.decide(cp["id"], "approve")
    flagged = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] not in ("pending", "delivered"))
    assert flagged["delivery"] == "resume_unconfirmed", flagged["delivery"]
    last = flagged["history"][-1]
    assert last["kind"] == "resume_unconfirmed" and last["detail"]["run_status"] == "running"
    shown = e2e.hitl("show", cp["id"]).stdout
    assert "resume_unconfirmed" in shown
    assert "resumed" not in [h["kind"] for h in flagged["history"]]


def test_form_tokens_appear_in_no_log_line_and_no_api_answer(e2e):
    started = gateway_run(e2e, "secret")
    token = next(e for e in started["events"] if e["event"] == "human_input_required")["data"]["form_token"]
    cp = form_checkpoint(e2e, started["workflow_run_id"])
    e2e.decide(cp["id"], "approve")
    wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed")
    answers = [httpx.get(f"{e2e.stack.ingest_url}{path}", headers=REVIEWER).text
               for path in ("/v1/checkpoints?limit=500", f"/v1/checkpoints/{cp['id']}", "/v1/runs",
                            f"/v1/runs/{started['workflow_run_id']}")]
    assert all(token not in text for text in answers)
    assert token not in logs(e2e.stack)
    assert APP_TOKEN not in logs(e2e.stack)


def sim_run(e2e: E2E, topic: str, user: str) -> dict:
    """A run started straight at Dify (its web app, another service): we never see its stream."""
    return httpx.post(f"{e2e.stack.sim_url}/v1/workflows/run", headers=DIFY, timeout=30,
                      json={"inputs": {"topic": topic}, "response_mode": "blocking", "user": user}).json()


def test_a_run_paused_elsewhere_is_discovered_captured_decided_by_cli_and_verified_resumed(e2e):
    started = sim_run(e2e, "Quarterly newsletter", user="someone-else")
    run_id = started["workflow_run_id"]
    assert started["data"]["status"] == "paused"
    cp = form_checkpoint(e2e, run_id, timeout_s=40)  # discovered in the logs, form captured by a re-attach
    assert cp["user"] == "someone-else" and cp["node_id"] == "review"
    assert "Quarterly newsletter" in cp["form"]["form_content"]  # rendered, not Dify's raw template
    assert "secret" not in cp and "form_token" not in json.dumps(cp)
    shown = e2e.hitl("run-show", run_id).stdout
    assert "waiting for a person" in shown
    out = e2e.hitl("decide", cp["id"], "approve", "--input", "edited=Approved as is")
    assert out.returncode == 0, out.stderr
    done = wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed")
    assert [h["kind"] for h in done["history"]] == ["captured", "decision", "delivered", "resumed"]
    run = final_run(e2e.stack, run_id)
    assert run["status"] == "succeeded" and run["outputs"]["edited"] == "Approved as is"
    tracked = httpx.get(f"{e2e.stack.ingest_url}/v1/runs/{run_id}", headers=REVIEWER).json()
    assert (tracked["source"], tracked["capture"]) in (("logs", "captured"), ("logs", None))
    assert "capture_captured" in [h["kind"] for h in tracked["history"]]
    assert tracked["outcome"] == "approved by alice"


def test_a_console_accounts_paused_run_shows_why_its_form_cannot_be_captured(e2e):
    answer = httpx.post(f"{e2e.stack.sim_url}/_sim/apps/forms/debug-run", timeout=30, json={
        "inputs": {"topic": "debug"}, "account": {"name": "Rita", "email": "rita@example.com"}}).json()
    run_id = answer["workflow_run_id"]
    deadline = time.monotonic() + 40
    while True:
        r = httpx.get(f"{e2e.stack.ingest_url}/v1/runs/{run_id}", headers=REVIEWER)
        if r.status_code == 200 and r.json().get("capture") == "unavailable":
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.3)
    run = r.json()
    assert "rita@example.com" in run["capture_detail"]
    assert any(h["kind"] == "capture_unavailable" for h in run["history"])
    shown = e2e.hitl("run-show", run_id).stdout
    assert "its form cannot be captured" in shown and "rita@example.com" in shown
