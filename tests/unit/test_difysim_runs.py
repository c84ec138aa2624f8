"""Run behaviour of the simulator: stop, maximum execution time, re-attach, HTTP node rules, nodes."""
from __future__ import annotations

import asyncio
import json

import httpx

from tests.difysim.config import SimConfig
from tests.difysim.testing import echo_graph, edge, http_graph, in_process, node, register, topic_start, until

RUN = {"inputs": {"topic": "x"}, "user": "u"}


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def run_blocking(graph: dict, handler, config: SimConfig | None = None) -> dict:
    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with in_process(config, node_http=node_http) as client:
            auth = await register(client, graph)
            return (await client.post("/v1/workflows/run", json=RUN, headers=auth)).json()

    return asyncio.run(scenario())


def test_stop_ends_the_stream_stopped_but_the_record_stays_running():
    release = asyncio.Event()
    calls = []

    async def held(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        await release.wait()
        return httpx.Response(200, text="late")

    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(held))
        async with in_process(node_http=node_http) as client:
            auth = await register(client, http_graph("http://cp.test/x"))
            blocking = asyncio.create_task(client.post("/v1/workflows/run", json=RUN, headers=auth))
            await until(lambda: bool(client.sim.store.runs))
            run = next(iter(client.sim.store.runs.values()))
            await asyncio.sleep(0.05)
            stop = await client.post(f"/v1/workflows/tasks/{run.task_id}/stop", json={"user": "u"}, headers=auth)
            answer = (await blocking).json()
            release.set()
            await asyncio.sleep(0.05)  # the held call still completes, silently
            record = (await client.get(f"/v1/workflows/run/{run.id}", headers=auth)).json()
            return stop.json(), answer, record

    stop, answer, record = asyncio.run(scenario())
    assert stop == {"result": "success"}
    assert (answer["data"]["status"], answer["data"]["error"]) == ("stopped", "Stopped by user.")
    assert answer["data"]["total_steps"] == 2
    assert (record["status"], record["total_steps"], record["finished_at"], record["outputs"]) == \
        ("running", 0, None, {})
    assert len(calls) == 1


def test_maximum_execution_time_stops_the_run_like_a_manual_stop():
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    answer = run_blocking(http_graph("http://cp.test/x"), never, SimConfig(max_execution_time_s=0.2))
    assert (answer["data"]["status"], answer["data"]["error"], answer["data"]["outputs"]) == \
        ("stopped", "Stopped by user.", {})


def test_reattach_to_a_finished_run_sends_one_synthesized_workflow_finished():
    async def scenario():
        async with in_process() as client:
            auth = await register(client, echo_graph())
            run_id = (await client.post("/v1/workflows/run", json=RUN, headers=auth)).json()["workflow_run_id"]
            other = await client.get(f"/v1/workflow/{run_id}/events?user=someone-else", headers=auth)
            return run_id, await client.get(f"/v1/workflow/{run_id}/events?user=u", headers=auth), other

    run_id, answer, other = asyncio.run(scenario())
    (event,) = data_events(answer.text)
    assert (event["event"], event["task_id"], event["data"]["status"]) == ("workflow_finished", run_id, "succeeded")
    assert '"event": "workflow_finished"' in answer.text  # json.dumps default separators, as recorded
    assert (other.status_code, other.json()["message"]) == (404, "Workflow run not found")


def test_streaming_run_emits_dify_events_in_order():
    async def scenario():
        async with in_process() as client:
            auth = await register(client, echo_graph())
            return await client.post("/v1/workflows/run", json={**RUN, "response_mode": "streaming"}, headers=auth)

    answer = asyncio.run(scenario())
    assert answer.text.startswith("event: ping\n\n")
    names = [e["event"] for e in data_events(answer.text)]
    # The End's text is streamed as soon as its variable exists: before the start's node_finished (fixture 02).
    assert names == ["workflow_started", "node_started", "text_chunk", "node_finished", "node_started",
                     "node_finished", "workflow_finished"]


def test_connection_refused_fails_the_run_with_the_socket_message():
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    answer = run_blocking(http_graph("http://cp.test/x"), refused)
    assert (answer["data"]["status"], answer["data"]["error"]) == ("failed", "[Errno 111] Connection refused")


def test_read_timeout_fails_with_timed_out():
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    assert run_blocking(http_graph("http://cp.test/x"), slow)["data"]["error"] == "timed out"


def test_4xx_without_retry_or_strategy_is_a_success_carrying_the_status():
    answer = run_blocking(http_graph("http://cp.test/x"), lambda r: httpx.Response(404, text="nope"))
    assert answer["data"]["status"] == "succeeded"
    assert answer["data"]["outputs"] == {"body": "nope", "status_code": 404}


def test_503_without_strategy_fails_with_reached_maximum_retries():
    answer = run_blocking(http_graph("http://cp.test/x?k=1"), lambda r: httpx.Response(503))
    assert answer["data"]["error"] == "Reached maximum retries for URL http://cp.test/x?k=1"


def test_http_node_sends_json_traceparent_and_bearer_auth():
    seen = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    graph = http_graph("http://cp.test/x", authorization={"type": "api-key",
                                                          "config": {"type": "bearer", "api_key": "s3cret"}})
    run_blocking(graph, record)
    request = seen[0]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["user-agent"].startswith("python-httpx/")
    assert request.headers["traceparent"].startswith("00-") and len(request.headers["traceparent"]) == 55
    assert json.loads(request.content) == {"topic": "x"}


def test_template_transform_renders_jinja_with_node_variables():
    transform = node("draft", {"type": "template-transform", "template": "Draft about {{ topic | upper }}",
                               "variables": [{"variable": "topic", "value_selector": ["start", "topic"]}]})
    end = node("end", {"type": "end", "outputs": [{"variable": "draft", "value_selector": ["draft", "output"]}]})
    graph = {"nodes": [topic_start(), transform, end], "edges": [edge("start", "draft"), edge("draft", "end")]}
    answer = run_blocking(graph, lambda r: httpx.Response(200))
    assert answer["data"]["outputs"] == {"draft": "Draft about X"}
    assert answer["data"]["total_steps"] == 3


def test_a_node_can_pause_the_run_and_resume_it_later(monkeypatch):
    """The hook the human-input node uses: a waiting node pauses the run, resume() continues it."""
    from tests.difysim import nodes
    from tests.difysim.nodes.base import NodeResult

    async def waiting_node(ctx):
        decision = await ctx.run.wait(ctx.run.add_waiter(ctx.node_id, None))
        return NodeResult(outputs={"decision": decision}, handles=(decision,))

    monkeypatch.setitem(nodes.EXECUTORS, "fake-wait", waiting_node)
    end = node("end", {"type": "end", "outputs": [{"variable": "decision", "value_selector": ["wait", "decision"]}]})
    graph = {"nodes": [topic_start(), node("wait", {"type": "fake-wait"}), end],
             "edges": [edge("start", "wait"), edge("wait", "end", handle="approve")]}

    async def scenario():
        async with in_process() as client:
            auth = await register(client, graph)
            paused = (await client.post("/v1/workflows/run", json=RUN, headers=auth)).json()
            run = client.sim.store.runs[paused["workflow_run_id"]]
            while_paused = (await client.get(f"/v1/workflows/run/{run.id}", headers=auth)).json()
            assert run.resume("approve")
            await run.task
            after = (await client.get(f"/v1/workflows/run/{run.id}", headers=auth)).json()
            return paused, while_paused, after, [e["event"] for e in run.events]

    paused, while_paused, after, names = asyncio.run(scenario())
    assert (paused["data"]["status"], paused["data"]["paused_nodes"], paused["data"]["reasons"]) == \
        ("paused", ["wait"], [])
    assert (while_paused["status"], while_paused["total_steps"]) == ("paused", 2)
    assert (after["status"], after["outputs"]) == ("succeeded", {"decision": "approve"})
    assert names.count("workflow_started") == 2 and "workflow_paused" in names
