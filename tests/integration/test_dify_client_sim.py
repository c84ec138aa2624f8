"""The Dify client against the Dify simulator (a real HTTP server in a subprocess), running the
recorded graphs of fixtures 01 and 02 with a local checkpoint server standing in for ours."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from shared.dify import DifyClient, DifyUnavailable, is_terminal
from shared.settings import AppConfig

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
FIXTURES = SHARED / "dify-fixtures"
RECORDED_CHECKPOINT = "http://127.0.0.1:9999"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.skipif(not FIXTURES.exists(), reason=f"no Dify fixtures at {FIXTURES}")]


class CheckpointHandler(BaseHTTPRequestHandler):
    """Answers every checkpoint call 200 {"action":"approve"}; `?delay=S` holds the answer S seconds."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        delay = float(parse_qs(urlparse(self.path).query).get("delay", ["0"])[0])
        time.sleep(delay)
        body = json.dumps({"action": "approve"}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the run was stopped and its caller went away

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def checkpoint_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CheckpointHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def recorded_graph(folder: str, checkpoint_url: str, query: str = "") -> dict:
    text = (FIXTURES / folder / "graph.json").read_text().replace(RECORDED_CHECKPOINT, checkpoint_url)
    graph = json.loads(text)
    for node in graph["nodes"]:
        if node["data"].get("type") == "http-request" and query:
            node["data"]["url"] += "&" + query
    return graph


def sim_post(simulator: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{simulator}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def sim_requests(simulator: str) -> list[dict]:
    with urllib.request.urlopen(f"{simulator}/_sim/requests", timeout=10) as answer:
        return json.loads(answer.read())["requests"]


def client_for(simulator: str, graph: dict, name: str, **options) -> DifyClient:
    key = sim_post(simulator, "/_sim/apps", {"name": name, "graph": graph})["api_key"]
    return DifyClient(AppConfig(name=name, checkpoint_token="cp-token-0001", dify_base_url=f"{simulator}/v1",
                                dify_api_key=key), **options)


def test_blocking_run_of_fixture_01_is_parsed_and_its_record_is_terminal(simulator_url, checkpoint_url):
    async def scenario():
        async with client_for(simulator_url, recorded_graph("01-http-ok-blocking", checkpoint_url), "c01") as dify:
            answer = await dify.run({"topic": "dify checkpoint test"}, user="fx-user-1")
            return answer, await dify.get_run(answer.workflow_run_id)

    answer, record = asyncio.run(scenario())
    assert answer.data.status == "succeeded" and answer.data.total_steps == 3
    assert answer.data.outputs["status_code"] == 200
    assert json.loads(answer.data.outputs["body"]) == {"action": "approve"}
    assert record.id == answer.workflow_run_id and record.is_terminal and record.status == "succeeded"
    assert record.user_inputs() == {"topic": "dify checkpoint test"}
    assert record.inputs["sys.user_id"] == "fx-user-1"


def test_streaming_run_of_fixture_02_yields_events_in_order(simulator_url, checkpoint_url):
    async def scenario():
        async with client_for(simulator_url, recorded_graph("02-http-ok-streaming", checkpoint_url), "c02") as dify:
            async with dify.stream_run({"topic": "stream test"}, user="fx-user-1") as stream:
                events = [event async for event in stream]
            return stream, events, await dify.get_run(stream.workflow_run_id)

    stream, events, record = asyncio.run(scenario())
    names = [e.event for e in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    nodes = [(e.event, e.data["node_id"]) for e in events if e.event in ("node_started", "node_finished")]
    assert nodes == [("node_started", "start"), ("node_finished", "start"), ("node_started", "checkpoint"),
                     ("node_finished", "checkpoint"), ("node_started", "end"), ("node_finished", "end")]
    assert events[-1].run_status == "succeeded" and stream.terminal_event is events[-1]
    assert stream.task_id and record.status == "succeeded" and is_terminal(record.status)


def test_logs_after_a_watermark_find_every_run_across_pages(simulator_url, checkpoint_url):
    watermark = datetime.fromtimestamp(int(time.time()) - 1, UTC)

    async def scenario():
        async with client_for(simulator_url, recorded_graph("01-http-ok-blocking", checkpoint_url), "logs") as dify:
            runs = [await dify.run({"topic": f"log {i}"}, user="log-user") for i in range(5)]
            pages = await dify.logs(limit=2, created_at_after=watermark)
            found = [entry async for entry in dify.iter_logs(watermark, limit=2, user="log-user")]
            return runs, pages, found

    runs, first_page, found = asyncio.run(scenario())
    assert first_page.has_more and first_page.total == 5 and len(first_page.data) == 2
    assert {e.workflow_run.id for e in found} == {r.workflow_run_id for r in runs}
    assert all(e.workflow_run.status == "succeeded" and e.created_by_end_user.session_id == "log-user" for e in found)


def test_stop_ends_a_streaming_run_stopped_while_the_record_may_say_running(simulator_url, checkpoint_url):
    graph = recorded_graph("02-http-ok-streaming", checkpoint_url, query="delay=5")

    async def scenario():
        async with client_for(simulator_url, graph, "stop") as dify:
            async with dify.stream_run({"topic": "stop test"}, user="fx-user-1") as stream:
                events = []
                async for event in stream:
                    events.append(event)
                    if event.event == "node_started" and event.data["node_id"] == "checkpoint":
                        assert await dify.stop(stream.task_id, "fx-user-1") == {"result": "success"}
            return stream, events, await dify.get_run(stream.workflow_run_id)

    started = time.monotonic()
    stream, events, record = asyncio.run(scenario())
    assert time.monotonic() - started < 4  # did not wait for the held checkpoint
    assert stream.terminal_event.run_status == "stopped" and stream.terminal_event.data["error"] == "Stopped by user."
    assert record.status == "running" and not record.is_terminal  # Dify's record never agrees (fixture 11)


def test_get_run_raises_unavailable_after_its_retries_during_an_outage(simulator_url, checkpoint_url):
    run_id = "00000000-0000-0000-0000-000000000001"

    async def scenario():
        async with client_for(simulator_url, recorded_graph("01-http-ok-blocking", checkpoint_url), "outage",
                              retries=2, backoff_base_s=0.01) as dify:
            sim_post(simulator_url, "/_sim/faults", {"outage": True})
            try:
                with pytest.raises(DifyUnavailable) as caught:
                    await dify.get_run(run_id)
            finally:
                sim_post(simulator_url, "/_sim/faults", {"outage": False})
            return caught.value

    error = asyncio.run(scenario())
    assert error.status == 502 and error.code == "bad_gateway"
    calls = [r for r in sim_requests(simulator_url) if r["path"] == f"/v1/workflows/run/{run_id}"]
    assert len(calls) == 3 and all(r["status"] == 502 for r in calls)
