"""Run monitoring end to end: the poller, the gateway, re-runs and stops, against the Dify simulator."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.graphs import template_graph
from tests.e2e.harness import E2E, node, wait_run

pytestmark = pytest.mark.e2e
REVIEWER = {"Authorization": "Bearer rv-alice-token"}
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}


@pytest.fixture
def e2e(tmp_path, sqlite_url, rabbitmq_url):
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url,
                      env={"HITL_POLL_MAX_INTERVAL_S": "2"}) as stack:
        harness = E2E(stack)
        yield harness
        harness.close()


def register_plain(e2e: E2E) -> None:
    r = httpx.post(f"{e2e.stack.sim_url}/_sim/apps", json={"name": "demo-review", "graph": template_graph(),
                                                          "api_key": DIFY_APP_KEY})
    r.raise_for_status()


def sim_run(e2e: E2E, topic: str, mode: str = "blocking", base: str | None = None) -> httpx.Response:
    return httpx.post(f"{base or e2e.stack.sim_url}/v1/workflows/run", headers=DIFY, timeout=60,
                      json={"inputs": {"topic": topic}, "response_mode": mode, "user": "someone"})


def test_discovery_through_the_logs_finds_finished_and_running_runs(e2e):
    e2e.register()
    waiting = e2e.start_run("still running")  # pauses at the checkpoint, started directly at Dify
    cp = e2e.wait_open()[0]
    run_id = cp["workflow_run_id"]
    register_plain(e2e)  # the same app now finishes at once
    done = sim_run(e2e, "already done").json()["workflow_run_id"]
    found = wait_run(e2e.stack, done, lambda r: r["status"] == "succeeded")
    assert found["source"] == "logs" and found["user"] == "someone"
    assert wait_run(e2e.stack, run_id, lambda r: r["status"] == "running")
    e2e.decide(cp["id"], "approve")
    waiting.result(timeout=30)
    final = wait_run(e2e.stack, run_id, lambda r: r["status"] == "succeeded" and r["dify_status"] == "succeeded")
    assert [h["status"] for h in final["history"] if h["kind"] == "status"][-1] == "succeeded"


def test_a_run_started_through_us_records_every_node_event_in_order(e2e):
    e2e.register()
    out = e2e.hitl("run", "demo", "--input", "topic=ordering", "--json")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["workflow_run_id"]
    cp = e2e.wait_open()[0]
    shown = wait_run(e2e.stack, run_id, lambda r: any(c["status"] == "open" for c in r["checkpoints"]))
    assert "waiting for a person" in e2e.hitl("run-show", run_id).stdout
    e2e.decide(cp["id"], "approve")
    run = wait_run(e2e.stack, run_id, lambda r: r["status"] == "succeeded")
    order = ["start", "draft", "checkpoint", "parse", "remember", "route", "published"]
    assert [n["node_id"] for n in run["nodes"]] == order
    assert all(n["status"] == "succeeded" for n in run["nodes"])
    node_history = [(h["node_id"], h["status"]) for h in run["history"] if h["kind"] == "node"]
    assert node_history == [(n, s) for n in order for s in ("running", "succeeded")]
    assert shown["streamed"] and run["task_id"]


def test_cutting_the_stream_mid_run_still_ends_with_the_correct_final_record(e2e):
    e2e.register(lambda g: node(g, "checkpoint")["data"]["retry_config"].update(retry_interval=1000))
    out = e2e.hitl("run", "demo", "--input", "topic=cut", "--json")
    run_id = json.loads(out.stdout)["workflow_run_id"]
    cp = e2e.wait_open()[0]
    e2e.stack.kill("ingest")  # the process reading the run's stream dies mid-run
    e2e.stack.start("ingest")
    deadline = time.monotonic() + 30
    while next(c for c in e2e.open_checkpoints() if c["id"] == cp["id"])["attach_count"] < 2:
        assert time.monotonic() < deadline, "Dify's retry never re-attached"
        time.sleep(0.2)
    e2e.decide(cp["id"], "approve")
    run = wait_run(e2e.stack, run_id, lambda r: r["status"] == "partial-succeeded")  # Dify counted the retry
    assert run["dify_status"] == "partial-succeeded"


def test_the_gateway_answers_exactly_as_dify_does(e2e):
    register_plain(e2e)
    direct = sim_run(e2e, "same")
    via = sim_run(e2e, "same", base=e2e.stack.ingest_url)
    assert via.status_code == direct.status_code == 200
    a, b = direct.json(), via.json()
    assert sorted(a) == sorted(b) and sorted(a["data"]) == sorted(b["data"])
    assert (a["data"]["status"], a["data"]["outputs"]) == (b["data"]["status"], b["data"]["outputs"])
    # The same record fetched both ways: the very same bytes.
    run_id = b["workflow_run_id"]
    direct_get = httpx.get(f"{e2e.stack.sim_url}/v1/workflows/run/{run_id}", headers=DIFY)
    via_get = httpx.get(f"{e2e.stack.ingest_url}/v1/workflows/run/{run_id}", headers=DIFY)
    assert via_get.content == direct_get.content and via_get.status_code == 200
    # Streaming: the same event sequence, and Dify's errors unchanged.
    def events(base):
        with httpx.stream("POST", f"{base}/v1/workflows/run", headers=DIFY, timeout=30,
                          json={"inputs": {"topic": "s"}, "response_mode": "streaming", "user": "u"}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data:")]
        return [(e["event"], e.get("data", {}).get("node_id"), e.get("data", {}).get("status"))
                for e in (json.loads(line[5:]) for line in lines)]
    assert events(e2e.stack.ingest_url) == events(e2e.stack.sim_url)
    bad = httpx.post(f"{e2e.stack.ingest_url}/v1/workflows/run", headers=DIFY, json={"inputs": {"topic": "x"}})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_param"
    assert wait_run(e2e.stack, run_id, lambda r: r["source"] == "gateway" and r["status"] == "succeeded")


def test_rerun_with_an_override_keeps_the_other_inputs_and_links_the_runs(e2e):
    register_plain(e2e)
    out = json.loads(e2e.hitl("run", "demo", "--input", "topic=first", "--json").stdout)
    original = out["workflow_run_id"]
    wait_run(e2e.stack, original, lambda r: r["status"] == "succeeded")
    again = e2e.hitl("rerun", original, "--set", "topic=second", "--json")
    assert again.returncode == 0, again.stderr
    new_id = json.loads(again.stdout)["workflow_run_id"]
    record = e2e.get_run(new_id)
    inputs = json.loads(record["inputs"])
    assert inputs["topic"] == "second"
    rerun = wait_run(e2e.stack, new_id, lambda r: r["status"] == "succeeded")
    assert (rerun["parent_run_id"], rerun["overrides"]) == (original, {"topic": "second"})
    assert rerun["outputs"] == {"result": "About second."}


def test_stopping_a_run_while_its_checkpoint_is_held_cancels_it_and_answers_abort(e2e):
    e2e.register()
    run_id = json.loads(e2e.hitl("run", "demo", "--input", "topic=stop me", "--json").stdout)["workflow_run_id"]
    cp = e2e.wait_open()[0]
    out = e2e.hitl("stop", run_id)
    assert out.returncode == 0, out.stderr
    shown = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = httpx.get(f"{e2e.stack.ingest_url}/v1/checkpoints/{cp['id']}", headers=REVIEWER).json()
        if shown["status"] != "open":
            break
        time.sleep(0.2)
    assert (shown["status"], shown["action"], shown["decided_by"], shown["reason"]) == \
        ("cancelled", "abort", "system", "run_ended")
    run = wait_run(e2e.stack, run_id, lambda r: r["status"] == "stopped" and r["stale_record"])
    assert run["dify_status"] == "running"  # Dify's record never agrees after a stop (fixture 11)
    metrics = httpx.get(f"{e2e.stack.ingest_url}/metrics").text
    assert "hitl_held_calls 0.0" in metrics  # the held call was answered (abort)


def test_stop_of_a_run_not_started_through_us_says_why_not(e2e):
    register_plain(e2e)
    run_id = sim_run(e2e, "elsewhere").json()["workflow_run_id"]
    wait_run(e2e.stack, run_id, lambda r: r["status"] == "succeeded")
    out = e2e.hitl("stop", run_id)
    assert out.returncode == 1 and "task_unknown" in out.stderr


def test_a_decided_detached_checkpoint_starts_the_continuation_app_with_the_decision(tmp_path, sqlite_url,
                                                                                    rabbitmq_url):
    from demo.stack import APP_TOKEN
    from tests.e2e.graphs import continuation_graph

    probe = ProcessStack(tmp_path / "ports")
    sim = f"http://127.0.0.1:{probe.ports['sim']}"
    apps = [{"name": "demo", "checkpoint_token": APP_TOKEN, "dify_base_url": sim, "dify_api_key": DIFY_APP_KEY,
             "continuation_app": "followup"},
            {"name": "followup", "checkpoint_token": "cp-followup-token", "dify_base_url": sim,
             "dify_api_key": "app-followup-key"}]
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, ports=probe.ports,
                      env={"HITL_APPS": json.dumps(apps), "HITL_REVIEWERS": json.dumps(
                          [{"name": "alice", "token": "rv-alice-token", "apps": ["demo", "followup"]}])}) as stack:
        httpx.post(f"{sim}/_sim/apps", json={"name": "followup", "graph": continuation_graph(),
                                            "api_key": "app-followup-key"}).raise_for_status()
        answer = httpx.post(f"{stack.ingest_url}/v1/checkpoints", headers={"Authorization": f"Bearer {APP_TOKEN}"},
                            json={"workflow_run_id": "3f1e0d6c-0000-4000-8000-000000000001", "node_id": "draft",
                                  "node_output": "a long report", "mode": "detached"}).json()
        assert answer["action"] == "pending"
        decided = httpx.post(f"{stack.ingest_url}/v1/checkpoints/{answer['checkpoint_id']}/decision",
                             headers=REVIEWER, json={"action": "edit", "output": "a shorter report"})
        assert decided.status_code == 200
        harness = E2E(stack)

        def continuation():
            runs = httpx.get(f"{stack.ingest_url}/v1/runs?app=followup", headers=REVIEWER).json()["runs"]
            return next((r for r in runs if r["continuation_of"] == answer["checkpoint_id"]
                         and r["status"] == "succeeded"), None)

        deadline = time.monotonic() + 30
        while (run := continuation()) is None:
            assert time.monotonic() < deadline, "no continuation run"
            time.sleep(0.3)
        assert run["outputs"] == {
            "result": "Continuing 3f1e0d6c-0000-4000-8000-000000000001 after edit: a shorter report"}
        harness.close()


def test_workflow_reported_events_are_recorded_and_published(e2e):
    run_id = "0b7a1c2d-0000-4000-8000-00000000abcd"
    token = {"Authorization": "Bearer cp-demo-token-change-me"}
    for event, node_id in (("started", None), ("fail_branch", "send_mail")):
        r = httpx.post(f"{e2e.stack.ingest_url}/v1/events", headers=token,
                       json={"workflow_run_id": run_id, "event": event, "node_id": node_id, "data": {"note": "x"}})
        assert r.status_code == 202, r.text
    bad = httpx.post(f"{e2e.stack.ingest_url}/v1/events", headers=REVIEWER,
                     json={"workflow_run_id": run_id, "event": "x"})
    assert bad.status_code == 401
    run = wait_run(e2e.stack, run_id, lambda r: len([h for h in r["history"] if h["kind"] == "event"]) == 2)
    assert [(h["detail"]["event"], h["node_id"]) for h in run["history"] if h["kind"] == "event"] == \
        [("started", None), ("fail_branch", "send_mail")]
