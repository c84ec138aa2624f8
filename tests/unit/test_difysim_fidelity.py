"""Behaviour found side by side with real Dify (both simulated versions): optional inputs, stop, no sandbox."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.difysim.config import SimConfig
from tests.difysim.nodes.sandbox import SANDBOX_UNREACHABLE
from tests.difysim.testing import edge, http_graph, in_process, node, register, until

VERSIONS = ["1.14", "1.17"]


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def start_with_optional_note() -> dict:
    return node("start", {"type": "start", "variables": [
        {"variable": "topic", "label": "topic", "type": "text-input", "required": True, "max_length": 256},
        {"variable": "note", "label": "note", "type": "text-input", "required": False, "max_length": 256},
        {"variable": "count", "label": "count", "type": "number", "required": False}]})


# ---------------------------------------------------------------- optional Start inputs
@pytest.mark.parametrize("version", VERSIONS)
def test_an_optional_input_left_out_is_null_in_the_run_and_empty_in_templates(version):
    received: list[dict] = []

    async def checkpoint(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(200, json={"ok": True})

    graph = http_graph("http://cp.test/x", body={"type": "json", "data": [
        {"key": "", "type": "text", "value": '{"topic": "{{#start.topic#}}", "note": "{{#start.note#}}"}'}]})
    graph["nodes"][0] = start_with_optional_note()

    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(checkpoint))
        async with in_process(SimConfig(dify_version=version), node_http=node_http) as client:
            auth = await register(client, graph)
            stream = await client.post("/v1/workflows/run", headers=auth, json={
                "inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"})
            run_id = data_events(stream.text)[0]["workflow_run_id"]
            record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
            return data_events(stream.text), record

    events, record = asyncio.run(scenario())
    assert received == [{"topic": "x", "note": ""}]  # not the bare selector text "start.note"
    inputs = json.loads(record["inputs"])
    assert (inputs["note"], inputs["count"]) == (None, None)
    started = events[0]["data"]["inputs"]
    assert (started["note"], started["count"]) == (None, None)


# ---------------------------------------------------------------- stop
@pytest.mark.parametrize("version", VERSIONS)
def test_stop_ends_the_stream_only_after_the_stop_delay_and_the_record_stays_running(version):
    release = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, text="late")

    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(held))
        config = SimConfig(dify_version=version, stop_delay_s=0.4)
        async with in_process(config, node_http=node_http) as client:
            auth = await register(client, http_graph("http://cp.test/x"))
            blocking = asyncio.create_task(client.post("/v1/workflows/run", json={"inputs": {"topic": "x"},
                                                                                   "user": "u"}, headers=auth))
            await until(lambda: bool(client.sim.store.runs))
            run = next(iter(client.sim.store.runs.values()))
            await asyncio.sleep(0.05)
            stopped_at = time.monotonic()
            await client.post(f"/v1/workflows/tasks/{run.task_id}/stop", json={"user": "u"}, headers=auth)
            right_after = run.stream_ended
            answer = (await blocking).json()
            waited = time.monotonic() - stopped_at
            release.set()
            record = (await client.get(f"/v1/workflows/run/{run.id}", headers=auth)).json()
            return right_after, answer, waited, record

    right_after, answer, waited, record = asyncio.run(scenario())
    assert right_after is False
    assert (answer["data"]["status"], answer["data"]["error"]) == ("stopped", "Stopped by user.")
    assert waited >= 0.4
    assert record["status"] == "running"


def test_a_run_that_finishes_before_the_stop_takes_effect_finishes_normally():
    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"ok": True})))
        async with in_process(SimConfig(stop_delay_s=5), node_http=node_http) as client:
            auth = await register(client, http_graph("http://cp.test/x"))
            stream = asyncio.create_task(client.post("/v1/workflows/run", headers=auth, json={
                "inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"}))
            await until(lambda: bool(client.sim.store.runs), step_s=0)
            run = next(iter(client.sim.store.runs.values()))
            await client.post(f"/v1/workflows/tasks/{run.task_id}/stop", json={"user": "u"}, headers=auth)
            events = data_events((await stream).text)
            return events[-1]["data"]["status"], run.status

    assert asyncio.run(scenario()) == ("succeeded", "succeeded")


# ---------------------------------------------------------------- no sandbox
def code_graph(strategy: str | None = None) -> dict:
    start = node("start", {"type": "start", "variables": [
        {"variable": "topic", "label": "topic", "type": "text-input", "required": True}]})
    code = node("code", {"type": "code", "code_language": "python3",
                         "code": "def main(topic):\n    return {'result': topic.upper()}\n",
                         "variables": [{"variable": "topic", "value_selector": ["start", "topic"]}],
                         "outputs": {"result": {"type": "string"}},
                         **({"error_strategy": strategy} if strategy else {})})
    template = node("tpl", {"type": "template-transform", "template": "{{ topic }}!",
                            "variables": [{"variable": "topic", "value_selector": ["start", "topic"]}]})
    end = node("end", {"type": "end", "outputs": [{"variable": "result", "value_selector": ["code", "result"]},
                                                  {"variable": "error", "value_selector": ["code", "error_message"]},
                                                  {"variable": "text", "value_selector": ["tpl", "output"]}]})
    edges = [edge("start", "code"), edge("code", "tpl", "fail-branch" if strategy else "source"),
             edge("tpl", "end")]
    return {"nodes": [start, code, template, end], "edges": edges}


def run_code_graph(graph: dict, no_sandbox: bool) -> tuple[dict, list[dict]]:
    async def scenario():
        async with in_process(SimConfig(no_sandbox=no_sandbox)) as client:
            auth = await register(client, graph)
            stream = await client.post("/v1/workflows/run", headers=auth, json={
                "inputs": {"topic": "x"}, "user": "u", "response_mode": "streaming"})
            events = data_events(stream.text)
            return events[-1]["data"], [e["data"] for e in events if e["event"] == "node_finished"]

    return asyncio.run(scenario())


def test_without_a_sandbox_a_code_node_fails_with_dify_sandbox_client_error():
    finished, nodes = run_code_graph(code_graph(), no_sandbox=True)
    assert (finished["status"], finished["error"]) == ("failed", SANDBOX_UNREACHABLE)
    code = next(n for n in nodes if n["node_id"] == "code")
    assert (code["status"], code["error"]) == ("failed", SANDBOX_UNREACHABLE)
    assert SANDBOX_UNREACHABLE.startswith("Failed to execute code, which is likely a network issue")


def test_without_a_sandbox_the_fail_branch_gets_the_error_and_template_transform_fails_too():
    finished, nodes = run_code_graph(code_graph(strategy="fail-branch"), no_sandbox=True)
    code = next(n for n in nodes if n["node_id"] == "code")
    assert code["status"] == "exception"
    assert code["outputs"] == {"error_message": SANDBOX_UNREACHABLE, "error_type": "CodeExecutionError"}
    template = next(n for n in nodes if n["node_id"] == "tpl")
    assert (template["status"], template["error"]) == ("failed", SANDBOX_UNREACHABLE)
    assert (finished["status"], finished["error"]) == ("failed", SANDBOX_UNREACHABLE)


def test_with_the_sandbox_on_by_default_code_and_template_nodes_run():
    finished, _ = run_code_graph(code_graph(), no_sandbox=False)
    assert (finished["status"], finished["outputs"]) == ("succeeded", {"result": "X", "error": None, "text": "x!"})
