"""Fixture 18 replayed against a fresh simulator: capturing the form of a run started elsewhere.

Like the conformance kit, each recorded exchange is sent again and a signature of the answer is
compared with the recording (statuses, event order, key sets, error bodies); ids and times are not.
The graph is fixture 17's `loop-human` (the app fixture 18 used: Start -> HTTP writer `draft` ->
Human Input `review` -> end_<action>), its writer URL pointed at a local stand-in that answers like
the recording's ("Draft 1 about <topic>.").
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.difysim.process import running_simulator

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
FIXTURES = SHARED / "dify-fixtures"
F18 = FIXTURES / "18-human-input-reattach-elsewhere"
GRAPH = FIXTURES / "17-dsl-export-import" / "loop-human.draft-sent.json"
RECORDED_WRITER = "127.0.0.1:19999"
NOISE = ("ping", "text_chunk")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def recorded(name: str) -> dict:
    return json.loads((F18 / name).read_text())


def recorded_sse(name: str) -> list[str]:
    """The lines of a recorded stream without their `[seconds]` prefixes."""
    return [re.sub(r"^\[[0-9.]+\] ", "", line) for line in (F18 / name).read_text().splitlines() if line.strip()]


def data_of(lines: list[str]) -> list[dict]:
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


def signature(events: list[dict]) -> list[list]:
    """Per event: its name, node, status and the key sets of the envelope and of its data."""
    return [[e["event"], (e.get("data") or {}).get("node_id", ""), (e.get("data") or {}).get("status", ""),
             list(e), sorted(e.get("data") or {})] for e in events if e["event"] not in NOISE]


def key_tree(value):
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    return None


class Writer:
    """The recording's writer: POST /write?topic=T&round=N -> 200 text/plain "Draft N about T."."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = f"Draft {query.get('round', '1')} about {query.get('topic', '')}.".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def sim():
    writer = Writer()
    # Pings every 0.5 s, so that "a re-attach without the snapshot flag yields only pings" shows quickly.
    with running_simulator("--ping-interval", "0.5") as url:
        graph = json.loads(GRAPH.read_text().replace(RECORDED_WRITER, writer.address))["graph"]
        key = httpx.post(f"{url}/_sim/apps", json={"name": "human", "graph": graph}).json()["api_key"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield client
    writer.httpd.shutdown()


def stream_run(client: httpx.Client, body: dict) -> tuple[httpx.Response, list[dict]]:
    """POST a streaming run and read it until the server closes it."""
    with client.stream("POST", "/v1/workflows/run", json=body) as answer:
        lines = [line for line in answer.iter_lines() if line.strip()]
    return answer, data_of(lines)


def read_events(client: httpx.Client, run_id: str, params: dict, seconds: float) -> tuple[httpx.Response, list[str],
                                                                                       bool]:
    """Open a re-attach and read for at most `seconds`; returns the lines and whether the server closed it."""
    lines, closed = [], False
    deadline = time.monotonic() + seconds
    with client.stream("GET", f"/v1/workflow/{run_id}/events", params=params, timeout=seconds + 5) as answer:
        if answer.status_code != 200:
            answer.read()
            return answer, [], True
        iterator = answer.iter_lines()
        while time.monotonic() < deadline:
            try:
                line = next(iterator)
            except StopIteration:
                closed = True
                break
            if line.strip():
                lines.append(line)
    return answer, lines, closed


def wait_finished(client: httpx.Client, run_id: str) -> dict:
    for _ in range(100):
        record = client.get(f"/v1/workflows/run/{run_id}").json()
        if record["status"] not in ("running", "paused"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {record}")


def row_of(logs: dict, run_id: str) -> dict:
    return next(row for row in logs["data"] if row["workflow_run"]["id"] == run_id)


def test_fixture_18_a_form_of_a_run_started_elsewhere_is_captured_and_decided(sim: httpx.Client):
    # 1. A streaming run started by "someone-else" pauses at the Human Input node.
    answer, live = stream_run(sim, recorded("run-request.json")["body"])
    assert answer.status_code == recorded("run-response-headers.json")["status"]
    assert answer.headers["content-type"] == recorded("run-response-headers.json")["headers"]["content-type"]
    assert signature(live) == signature(data_of(recorded_sse("run-stream.sse")))
    run_id = live[0]["workflow_run_id"]
    token = next(e["data"]["form_token"] for e in live if e["event"] == "human_input_required")

    # 2. The logs show it paused, with the end user's session id to re-attach with.
    logs = sim.get("/v1/workflows/logs", params={"limit": 5}).json()
    row, recorded_row = row_of(logs, run_id), recorded("logs.json")["response"]["body"]["data"][0]
    assert key_tree(row) == key_tree(recorded_row)
    assert (row["workflow_run"]["status"], row["workflow_run"]["total_steps"]) == ("paused", 3)
    assert (row["created_by_role"], row["created_by_end_user"]["session_id"]) == ("end_user", "someone-else")

    # 3. A re-attach with the snapshot flag replays the run, the form token included, then closes.
    user = row["created_by_end_user"]["session_id"]
    answer, lines, closed = read_events(sim, run_id, {"user": user, "include_state_snapshot": "true"}, 10)
    expected_lines = recorded_sse("reattach-snapshot.sse")
    assert answer.status_code == recorded("reattach-snapshot-response.json")["response"]["status"]
    assert closed and lines[0] == expected_lines[0] == "event: ping"
    replay = data_of(lines)
    assert signature(replay) == signature(data_of(expected_lines))
    required = next(e["data"] for e in replay if e["event"] == "human_input_required")
    expected_required = next(e["data"] for e in data_of(expected_lines) if e["event"] == "human_input_required")
    assert required["form_token"] == token
    assert required["form_content"] == expected_required["form_content"]  # the unrendered template
    assert required["resolved_default_values"] == {"edited": "Draft 1 about Quarterly customer newsletter."}

    # 4. Any other user: 404, exactly as recorded.
    for case in ("reattach-wrong-user-intruder.json", "reattach-wrong-user-someone-else-2.json"):
        call = recorded(case)
        answer, _, _ = read_events(sim, run_id, call["request"]["params"], 5)
        expected_body = json.loads(call["response"]["body"])  # Flask ends its JSON with a newline; not compared
        assert (answer.status_code, list(answer.json().items())) == (call["response"]["status"],
                                                                      list(expected_body.items()))

    # 5. Without the snapshot flag: nothing but pings, and the stream stays open.
    params = recorded("reattach-no-snapshot-response.json")["request"]["params"]
    answer, lines, closed = read_events(sim, run_id, params, 1.6)
    assert answer.status_code == 200 and not closed
    assert set(lines) == set(recorded_sse("reattach-no-snapshot.sse")) == {"event: ping"} and len(lines) >= 3

    # 6. Submitting with the form token resumes the run, which succeeds.
    call = recorded("form-submit-approve.json")
    answer = sim.post(f"/v1/form/human_input/{token}", json=call["request"]["body"])
    assert (answer.status_code, answer.json()) == (call["response"]["status"], json.loads(call["response"]["body"]))
    final, expected = wait_finished(sim, run_id), recorded("get-run-after-submit.json")["final"]["body"]
    assert (final["status"], list(final), final["total_steps"]) == (expected["status"], list(expected),
                                                                      expected["total_steps"])
    assert final["outputs"] == expected["outputs"]

    # 7. A second run: the form may be decided by a different `user` (only the re-attach is bound to one).
    answer, live2 = stream_run(sim, {**recorded("run-request.json")["body"], "inputs": {"topic": "Release notes 2.3"}})
    assert signature(live2) == signature(data_of(recorded_sse("run2-stream.sse")))
    run2 = live2[0]["workflow_run_id"]
    token2 = next(e["data"]["form_token"] for e in live2 if e["event"] == "human_input_required")
    call = recorded("run2-form-submit-other-user.json")
    answer = sim.post(f"/v1/form/human_input/{token2}", json=call["request"]["body"])
    assert (answer.status_code, answer.json()) == (call["response"]["status"], json.loads(call["response"]["body"]))
    final2 = wait_finished(sim, run2)
    assert final2["outputs"] == recorded("run2-get-run-after-submit.json")["final"]["body"]["outputs"]

    # 8. Both runs are listed succeeded, still as someone-else's.
    after = sim.get("/v1/workflows/logs", params={"limit": 3}).json()
    for rid in (run_id, run2):
        row = row_of(after, rid)
        assert (row["workflow_run"]["status"], row["created_by_end_user"]["session_id"]) == ("succeeded",
                                                                                            "someone-else")
    assert key_tree(after["data"][0]) == key_tree(recorded("logs-after.json")["response"]["body"]["data"][0])
