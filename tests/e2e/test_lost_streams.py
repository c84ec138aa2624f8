"""Lost streams are re-attached: kill -9 of the process reading a run's live stream (the poller following
a resumed Human Input run, ingest reading a run it started) in the middle of a node, then a restart —
the poller sees no sign of a reader (StreamWatch heartbeats stop), re-attaches with the run's user and
the state snapshot, and the node timeline completes: every node ends as Dify ended it, none is left
`running` (shown grey "stopped")."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.graphs import _edge, end, slow_graph, start
from tests.e2e.harness import E2E, ok_endpoint, wait_for

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "09-human-input-streaming" / "graph.json"
REVIEWER = {"Authorization": "Bearer rv-alice-token"}
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}
ENV = {"HITL_STREAM_HEARTBEAT_S": "1", "HITL_STREAM_LOST_AFTER_S": "4", "HITL_POLL_MAX_INTERVAL_S": "2",
       "HITL_RESUME_TIMEOUT_S": "30"}


class Gate:
    """A local HTTP endpoint whose GETs wait until the test opens the gate: the run's HTTP node runs
    for as long as the test wants."""

    def __init__(self) -> None:
        self.open_event = threading.Event()
        self.server = ok_endpoint(lambda: self.open_event.wait(120))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow"

    def close(self) -> None:
        self.open_event.set()
        self.server.shutdown()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


@pytest.fixture
def stack(tmp_path, sqlite_url, rabbitmq_url):
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, env=ENV) as s:
        yield s


def review_then_wait_graph(url: str) -> dict:
    """Start → Human Input `review` (fixture 09's) → on approve an HTTP GET that waits at the gate → End."""
    review = next(n for n in json.loads(FIXTURE.read_text())["nodes"] if n["id"] == "review")
    wait = slow_graph(url)["nodes"][1]
    edges = [_edge("start", "review"), {**_edge("review", "wait"), "sourceHandle": "approve"}, _edge("wait", "end")]
    return {"nodes": [start(), review, wait, end(["wait", "body"])], "edges": edges,
            "viewport": {"x": 0, "y": 0, "zoom": 1}}


def run_view(stack: ProcessStack, run_id: str) -> dict:
    r = httpx.get(f"{stack.ingest_url}/v1/runs/{run_id}", headers=REVIEWER, timeout=10)
    return r.json() if r.status_code == 200 else {}


def node_running(stack: ProcessStack, run_id: str, node_id: str) -> bool:
    return any(n["node_id"] == node_id and n["status"] == "running" for n in run_view(stack, run_id).get("nodes", []))


def reattached(stack: ProcessStack, run_id: str) -> bool:
    text = (stack.workdir / "poller.log").read_text(errors="replace")
    return any('"stream.reattach_lost"' in line and run_id in line for line in text.splitlines())


def complete(stack: ProcessStack, run_id: str, nodes: list[str]) -> dict:
    run = run_view(stack, run_id)
    done = run.get("status") == "succeeded" and [n["node_id"] for n in run.get("nodes", [])] == nodes \
        and all(n["status"] == "succeeded" for n in run["nodes"])
    return run if done else {}


def test_kill_9_of_the_poller_mid_stream_still_ends_with_a_complete_timeline(stack, gate):
    httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": "review-wait", "graph": review_then_wait_graph(gate.url),
                                                   "api_key": DIFY_APP_KEY}).raise_for_status()
    e2e = E2E(stack)
    with httpx.stream("POST", f"{stack.ingest_url}/v1/workflows/run", headers=DIFY, timeout=30,
                      json={"inputs": {"topic": "kill me"}, "response_mode": "streaming", "user": "editor-1"}) as r:
        first = next(json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:"))
    run_id = first["workflow_run_id"]
    cp = wait_for(lambda: next((c for c in e2e.open_checkpoints() if c["workflow_run_id"] == run_id), None), 60,
                  "the form")
    e2e.decide(cp["id"], "approve")
    # The poller submitted the form and follows the resumed run: it has seen the HTTP node start.
    wait_for(lambda: node_running(stack, run_id, "wait"), 60, "the HTTP node running")
    stack.kill("poller")
    stack.start("poller")
    wait_for(lambda: reattached(stack, run_id), 60, "a re-attach of the lost stream")
    gate.open_event.set()
    run = wait_for(lambda: complete(stack, run_id, ["start", "review", "wait", "end"]), 60, "a complete timeline")
    assert run["streamed"] and run["reattach_count"] >= 1
    shown = e2e.hitl("run-show", run_id).stdout
    assert "stopped" not in shown and "running" not in shown
    e2e.close()


def test_kill_9_of_ingest_reading_a_run_it_started_ends_with_a_complete_timeline(stack, gate):
    httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": "slow", "graph": slow_graph(gate.url),
                                                   "api_key": DIFY_APP_KEY}).raise_for_status()
    e2e = E2E(stack)
    out = e2e.hitl("run", "demo", "--input", "topic=cut", "--json")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["workflow_run_id"]
    wait_for(lambda: node_running(stack, run_id, "wait"), 60, "the HTTP node running")
    stack.kill("ingest")
    wait_for(lambda: reattached(stack, run_id), 60, "a re-attach of the lost stream")
    stack.start("ingest")
    gate.open_event.set()
    run = wait_for(lambda: complete(stack, run_id, ["start", "wait", "end"]), 60, "a complete timeline")
    assert run["outputs"] == {"result": '{"ok":true}'}
    e2e.close()
