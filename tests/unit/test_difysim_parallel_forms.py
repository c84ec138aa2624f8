"""Several Human Input nodes waiting at once in parallel branches of one run (pausing.py)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.difysim.config import SimConfig
from tests.difysim.testing import edge, in_process, node, register, topic_start, until

STREAM = {"inputs": {"topic": "t"}, "user": "u", "response_mode": "streaming"}


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] not in ("text_chunk", "ping")]


def review(node_id: str, timeout: float = 1) -> dict:
    return node(node_id, {"type": "human-input", "title": node_id, "form_content": f"{node_id}: {{{{#$output.text#}}}}",
                          "inputs": [{"type": "paragraph", "output_variable_name": "text"}],
                          "user_actions": [{"id": "ok", "title": "OK", "button_style": "primary"}],
                          "delivery_methods": [{"id": "d", "enabled": True, "type": "webapp", "config": {}}],
                          "timeout": timeout, "timeout_unit": "hour"})


def parallel_graph(with_http: bool = False, timeout_b: float = 1) -> dict:
    """Start -> review_a and review_b in parallel (-> end_a, end_b); optionally a third branch HTTP -> end_c."""
    nodes = [topic_start(), review("review_a"), review("review_b", timeout_b),
             node("end_a", {"type": "end", "outputs": [{"variable": "a", "value_selector": ["review_a", "text"]}]}),
             node("end_b", {"type": "end", "outputs": [{"variable": "b", "value_selector": ["review_b", "text"]}]})]
    edges = [edge("start", "review_a"), edge("start", "review_b"), edge("review_a", "end_a", "ok"),
             edge("review_b", "end_b", "ok"), edge("review_b", "end_b", "__timeout")]
    if with_http:
        nodes += [node("slow", {"type": "http-request", "method": "get", "url": "http://slow.test/",
                                "timeout": {"connect": 5, "read": 30, "write": 5}}),
                  node("end_c", {"type": "end", "outputs": [{"variable": "c", "value_selector": ["slow", "body"]}]})]
        edges += [edge("start", "slow"), edge("slow", "end_c")]
    return {"nodes": nodes, "edges": edges}


def scenario(steps, graph: dict, handler=None, config: SimConfig | None = None):
    async def main():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(handler)) if handler else None
        async with in_process(config, node_http=node_http) as client:
            auth = await register(client, graph)
            return await steps(client, auth)

    return asyncio.run(main())


def tokens_of(events: list[dict]) -> dict[str, str]:
    return {e["data"]["node_id"]: e["data"]["form_token"] for e in events if e["event"] == "human_input_required"}


async def submit(client, auth, token: str, text: str):
    return await client.post(f"/v1/form/human_input/{token}", headers=auth,
                             json={"inputs": {"text": text}, "action": "ok", "user": "u"})


async def settle(client, run_id: str) -> None:
    await asyncio.gather(client.sim.store.runs[run_id].task, return_exceptions=True)


def test_each_waiting_node_announces_its_own_form_before_one_workflow_paused():
    async def steps(client, auth):
        events = data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)
        blocking = (await client.post("/v1/workflows/run", json={**STREAM, "response_mode": "blocking"},
                                      headers=auth)).json()
        return events, blocking

    events, blocking = scenario(steps, parallel_graph())
    assert names(events)[-1] == "workflow_paused" and names(events).count("workflow_paused") == 1
    assert names(events).count("human_input_required") == 2
    tokens = tokens_of(events)
    assert set(tokens) == {"review_a", "review_b"} and len(set(tokens.values())) == 2
    paused = events[-1]["data"]
    assert sorted(paused["paused_nodes"]) == ["review_a", "review_b"]
    assert sorted(r["form_token"] for r in paused["reasons"]) == sorted(tokens.values())
    data = blocking["data"]
    assert data["status"] == "paused" and sorted(data["paused_nodes"]) == ["review_a", "review_b"]
    assert len(data["reasons"]) == 2


def test_the_run_resumes_only_when_every_form_is_submitted():
    async def steps(client, auth):
        events = data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)
        run_id, tokens = events[0]["workflow_run_id"], tokens_of(events)
        run = client.sim.store.runs[run_id]
        first = await submit(client, auth, tokens["review_a"], "from a")
        await asyncio.sleep(0.05)
        between = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()["status"]
        events_between = names(run.events)[len(names(events)):]
        second = await submit(client, auth, tokens["review_b"], "from b")
        await settle(client, run_id)
        record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
        return first.status_code, second.status_code, between, events_between, record, run.events

    first, second, between, events_between, record, events = scenario(steps, parallel_graph())
    assert (first, second) == (200, 200)
    assert between == "paused" and events_between == []  # one decided form does not resume the run
    after = names(events)[names(events).index("workflow_paused") + 1:]
    assert after.count("workflow_started") == 1 and after[0] == "workflow_started"
    assert after.count("human_input_form_filled") == 2 and "workflow_paused" not in after
    assert (record["status"], record["outputs"]) == ("succeeded", {"a": "from a", "b": "from b"})


def test_a_snapshot_re_attach_replays_every_form_still_waiting():
    async def steps(client, auth):
        events = data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)
        run_id, tokens = events[0]["workflow_run_id"], tokens_of(events)
        url = f"/v1/workflow/{run_id}/events?user=u&include_state_snapshot=true"
        both = data_events((await client.get(url, headers=auth)).text)
        await submit(client, auth, tokens["review_a"], "from a")
        one = data_events((await client.get(url, headers=auth)).text)
        return tokens, both, one

    tokens, both, one = scenario(steps, parallel_graph())
    assert tokens_of(both) == tokens
    assert names(both)[-1] == "workflow_paused" and len(both[-1]["data"]["reasons"]) == 2
    paused_nodes = {e["data"]["node_id"] for e in both if e["event"] == "node_finished"
                    and e["data"]["status"] == "paused"}
    assert paused_nodes == {"review_a", "review_b"}
    assert tokens_of(one) == {"review_b": tokens["review_b"]}
    assert one[-1]["data"]["paused_nodes"] == ["review_b"]
    assert [r["node_id"] for r in one[-1]["data"]["reasons"]] == ["review_b"]


def held_http_node() -> tuple[asyncio.Event, Callable[[httpx.Request], Awaitable[httpx.Response]]]:
    """An HTTP node's answer held until the test sets the event: (the event, the node's handler)."""
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, text="done")

    return release, slow


async def both_forms_open(client, auth) -> tuple[asyncio.Task, Any]:
    """A streaming run of the parallel graph started, once both its forms are open: (the stream, the run)."""
    stream = asyncio.create_task(client.post("/v1/workflows/run", json=STREAM, headers=auth))
    runs = client.sim.store.runs
    await until(lambda: bool(runs) and len(tokens_of(next(iter(runs.values())).events)) >= 2)
    return stream, next(iter(runs.values()))


def test_the_run_pauses_only_once_a_busy_parallel_branch_has_finished():
    release, slow = held_http_node()

    async def steps(client, auth):
        stream, run = await both_forms_open(client, auth)
        await asyncio.sleep(0.1)
        before_release = (run.status, names(run.events).count("workflow_paused"))
        release.set()
        events = data_events((await stream).text)
        return before_release, events

    before_release, events = scenario(steps, parallel_graph(with_http=True), slow)
    assert before_release == ("running", 0)
    finished_nodes = [e["data"]["node_id"] for e in events if e["event"] == "node_finished"]
    assert "slow" in finished_nodes and "end_c" in finished_nodes
    assert names(events)[-1] == "workflow_paused"
    assert sorted(events[-1]["data"]["paused_nodes"]) == ["review_a", "review_b"]


def test_a_form_submitted_before_the_run_paused_lets_its_branch_go_on():
    release, slow = held_http_node()

    async def steps(client, auth):
        stream, run = await both_forms_open(client, auth)
        answer = await submit(client, auth, tokens_of(run.events)["review_a"], "early")
        await asyncio.sleep(0.05)
        release.set()
        return answer.status_code, data_events((await stream).text)

    status, events = scenario(steps, parallel_graph(with_http=True), slow)
    assert status == 200
    filled = [i for i, e in enumerate(events) if e["event"] == "human_input_form_filled"]
    assert len(filled) == 1 and filled[0] < names(events).index("workflow_paused")
    assert events[-1]["data"]["paused_nodes"] == ["review_b"]


def test_one_form_timing_out_and_the_other_submitted_resume_the_run_together():
    async def steps(client, auth):
        events = data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)
        run_id, tokens = events[0]["workflow_run_id"], tokens_of(events)
        await submit(client, auth, tokens["review_a"], "from a")
        hook = (await client.post("/_sim/human_input/expire")).json()
        await settle(client, run_id)
        return run_id, hook, (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()

    run_id, hook, record = scenario(steps, parallel_graph(timeout_b=0))
    assert hook == {"timed_out": [run_id], "stopped": []}
    assert (record["status"], record["outputs"]) == ("succeeded", {"a": "from a", "b": None})
