"""Iteration nodes, and Human Input inside Loop and Iteration nodes (Dify 1.16+, the simulator's 1.17 mode)."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.difysim.config import SimConfig
from tests.difysim.testing import edge, in_process, node, register, topic_start, until

NEWER = SimConfig(dify_version="1.17")
STREAM = {"inputs": {"topic": "t"}, "user": "u", "response_mode": "streaming"}


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] not in ("text_chunk", "ping")]


def child(node_id: str, parent: str, kind: str, data: dict) -> dict:
    flag = {"loop": {"isInLoop": True, "loop_id": parent}, "iteration": {"isInIteration": True,
                                                                         "iteration_id": parent}}[kind]
    return node(node_id, {**data, **flag}, parentId=parent)


def review_data(title: str = "Review") -> dict:
    return {"type": "human-input", "title": title, "form_content": "Item: {{#$output.text#}}",
            "inputs": [{"type": "paragraph", "output_variable_name": "text"}],
            "user_actions": [{"id": "approve", "title": "Approve"}, {"id": "revise", "title": "Revise"}],
            "delivery_methods": [{"id": "d", "enabled": True, "type": "webapp", "config": {}}],
            "timeout": 1, "timeout_unit": "hour"}


def loop_review_graph() -> dict:
    """Loop(max 3){review -> store the action}; breaks once the action is approve."""
    loop = node("loop", {"type": "loop", "title": "Loop", "loop_count": 3, "logical_operator": "and",
                         "start_node_id": "loopstart",
                         "break_conditions": [{"variable_selector": ["loop", "last"], "comparison_operator": "is",
                                               "value": "approve"}],
                         "loop_variables": [{"label": "last", "var_type": "string", "value_type": "constant",
                                             "value": ""}]})
    start = {**child("loopstart", "loop", "loop", {"type": "loop-start"}), "type": "custom-loop-start"}
    assign = child("assign", "loop", "loop", {"type": "assigner", "version": "2", "items": [
        {"variable_selector": ["loop", "last"], "input_type": "variable", "operation": "over-write",
         "value": ["review", "__action_id"]}]})
    end = node("end", {"type": "end", "outputs": [{"variable": "last", "value_selector": ["loop", "last"]},
                                                  {"variable": "rounds", "value_selector": ["loop", "loop_round"]}]})
    review = child("review", "loop", "loop", review_data())
    edges = [edge("start", "loop"), edge("loopstart", "review"), edge("review", "assign", "approve"),
             edge("review", "assign", "revise"), edge("loop", "end")]
    return {"nodes": [topic_start(), loop, start, review, assign, end], "edges": edges}


def iteration_graph(body: dict, parallel: bool = False, mode: str | None = None, output: str = "text") -> dict:
    """Start -> Code(list of 3) -> Iteration{body} -> End(output)."""
    items = node("items", {"type": "code", "code_language": "python3",
                           "code": "def main():\n    return {'items': ['a', 'b', 'c']}\n",
                           "variables": [], "outputs": {"items": {"type": "array[string]"}}})
    iteration = node("it", {"type": "iteration", "title": "Each", "iterator_selector": ["items", "items"],
                            "output_selector": ["body", output], "start_node_id": "itstart",
                            "is_parallel": parallel, "parallel_nums": 3,
                            **({"error_handle_mode": mode} if mode else {})})
    start = {**child("itstart", "it", "iteration", {"type": "iteration-start"}), "type": "custom-iteration-start"}
    end = node("end", {"type": "end", "outputs": [{"variable": "all", "value_selector": ["it", "output"]}]})
    edges = [edge("start", "items"), edge("items", "it"), edge("itstart", "body"), edge("it", "end")]
    return {"nodes": [topic_start(), items, iteration, start, child("body", "it", "iteration", body), end],
            "edges": edges}


UPPER = {"type": "template-transform", "template": "{{ x | upper }}#{{ i }}",
         "variables": [{"variable": "x", "value_selector": ["it", "item"]},
                       {"variable": "i", "value_selector": ["it", "index"]}]}


def run_stream(graph: dict, config: SimConfig | None = None) -> list[dict]:
    async def scenario():
        async with in_process(config) as client:
            auth = await register(client, graph)
            return data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)

    return asyncio.run(scenario())


# ---------------------------------------------------------------- Iteration
@pytest.mark.parametrize("parallel", [False, True])
def test_an_iteration_runs_its_body_per_item_and_collects_the_outputs_in_order(parallel):
    events = run_stream(iteration_graph(UPPER, parallel=parallel, output="output"))
    finished = events[-1]["data"]
    assert (finished["status"], finished["outputs"]) == ("succeeded", {"all": ["A#0", "B#1", "C#2"]})
    assert finished["total_steps"] == 4  # start, items, the iteration, end: its children do not count
    assert names(events).count("iteration_started") == 1 and names(events).count("iteration_completed") == 1
    bodies = [e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == "body"]
    assert sorted(b["execution_metadata"]["iteration_index"] for b in bodies) == [0, 1, 2]
    assert {b["iteration_id"] for b in bodies} == {"it"}


def test_a_sequential_iteration_announces_each_next_item():
    events = run_stream(iteration_graph(UPPER, output="output"))
    assert [e["data"]["index"] for e in events if e["event"] == "iteration_next"] == [1, 2]
    completed = next(e["data"] for e in events if e["event"] == "iteration_completed")
    assert (completed["status"], completed["steps"], completed["outputs"]) == \
        ("succeeded", 3, {"output": ["A#0", "B#1", "C#2"]})


FAIL_ON_B = {"type": "code", "code_language": "python3",
             "code": "def main(x):\n    if x == 'b':\n        raise ValueError('no b')\n    return {'text': x}\n",
             "variables": [{"variable": "x", "value_selector": ["it", "item"]}],
             "outputs": {"text": {"type": "string"}}}


# A failed child counts as an exception like any failed node (engine.py), hence partial-succeeded.
@pytest.mark.parametrize(("mode", "status", "outputs"), [
    ("terminated", "failed", {}), ("continue-on-error", "partial-succeeded", {"all": ["a", None, "c"]}),
    ("remove-abnormal-output", "partial-succeeded", {"all": ["a", "c"]})])
def test_a_failing_item_follows_the_error_handle_mode(mode, status, outputs):
    finished = run_stream(iteration_graph(FAIL_ON_B, mode=mode))[-1]["data"]
    assert (finished["status"], finished["outputs"]) == (status, outputs)


def test_an_iteration_over_something_else_than_a_list_fails():
    graph = iteration_graph(UPPER, output="output")
    graph["nodes"][1]["data"]["code"] = "def main():\n    return {'items': 'abc'}\n"
    finished = run_stream(graph)[-1]["data"]
    assert (finished["status"], finished["error"]) == ("failed", "Invalid iterator value: abc, please provide a list.")


# ---------------------------------------------------------------- Human Input inside containers
async def decide_each_pause(client, auth, actions: list[str]) -> tuple[list[list[dict]], dict]:
    """Start a streaming run; at each pause submit the next action. Returns the streams and the record."""
    streams = [data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)]
    run_id = streams[0][0]["workflow_run_id"]
    run = client.sim.store.runs[run_id]
    seen = len(run.events)
    for i, action in enumerate(actions):
        forms = [e["data"] for e in run.events if e["event"] == "human_input_required"]
        answer = await client.post(f"/v1/form/human_input/{forms[-1]['form_token']}", headers=auth,
                                   json={"inputs": {"text": f"round {i}"}, "action": action, "user": "u"})
        assert answer.status_code == 200
        await until(lambda: run.status == "paused" or run.stream_ended)
        streams.append(run.events[seen:])
        seen = len(run.events)
    await asyncio.gather(run.task, return_exceptions=True)
    return streams, (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()


def test_a_human_input_inside_a_loop_pauses_the_run_and_the_loop_goes_on_after_each_decision():
    async def scenario():
        async with in_process(NEWER) as client:
            auth = await register(client, loop_review_graph())
            return await decide_each_pause(client, auth, ["revise", "approve"])

    streams, record = asyncio.run(scenario())
    first = streams[0]
    assert names(first)[-2:] == ["human_input_required", "workflow_paused"]
    assert first[-1]["data"]["paused_nodes"] == ["review"]
    assert next(e for e in first if e["event"] == "node_started" and e["data"]["node_id"] == "review")[
        "data"]["loop_id"] == "loop"
    second = names(streams[1])
    assert second[0] == "workflow_started" and "loop_next" in second and second[-1] == "workflow_paused"
    third = names(streams[2])
    assert "loop_completed" in third and third[-1] == "workflow_finished"
    tokens = [e["data"]["form_token"] for s in streams for e in s if e["event"] == "human_input_required"]
    assert len(set(tokens)) == 2
    assert (record["status"], record["outputs"]) == ("succeeded", {"last": "approve", "rounds": 2})


def test_a_human_input_inside_an_iteration_pauses_once_per_item():
    async def scenario():
        async with in_process(NEWER) as client:
            auth = await register(client, iteration_graph(review_data()))
            return await decide_each_pause(client, auth, ["approve", "approve", "approve"])

    streams, record = asyncio.run(scenario())
    assert [names(s).count("workflow_paused") for s in streams] == [1, 1, 1, 0]
    assert (record["status"], record["outputs"]) == ("succeeded", {"all": ["round 0", "round 1", "round 2"]})
    required = next(e["data"] for e in streams[0] if e["event"] == "node_started" and e["data"]["node_id"] == "body")
    assert required["iteration_id"] == "it"


def test_human_inputs_of_a_parallel_iteration_wait_together_and_a_snapshot_replays_each():
    async def scenario():
        async with in_process(NEWER) as client:
            auth = await register(client, iteration_graph(review_data(), parallel=True))
            events = data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)
            run_id = events[0]["workflow_run_id"]
            snapshot = data_events((await client.get(
                f"/v1/workflow/{run_id}/events?user=u&include_state_snapshot=true", headers=auth)).text)
            for i, e in enumerate(e for e in events if e["event"] == "human_input_required"):
                await client.post(f"/v1/form/human_input/{e['data']['form_token']}", headers=auth,
                                  json={"inputs": {"text": f"item {i}"}, "action": "approve", "user": "u"})
            await asyncio.gather(client.sim.store.runs[run_id].task, return_exceptions=True)
            record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
            return events, snapshot, record

    events, snapshot, record = asyncio.run(scenario())
    assert names(events).count("human_input_required") == 3 and names(events)[-1] == "workflow_paused"
    assert len(events[-1]["data"]["reasons"]) == 3
    assert names(snapshot).count("human_input_required") == 3
    assert record["status"] == "succeeded" and sorted(record["outputs"]["all"]) == ["item 0", "item 1", "item 2"]
