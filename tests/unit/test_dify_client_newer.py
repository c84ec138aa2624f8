"""The Dify client parses what Dify 1.15–1.17 adds (DIFY.md "Newer Dify"), against the simulator's 1.17
mode in-process: select / file / file-list form inputs, submitted_data, reasoning_chunk events, Human
Input inside a Loop; and an input type it does not know parses without a crash."""
from __future__ import annotations

import asyncio
import contextlib

from shared.dify import DifyClient, FormInput, PauseReason, StreamEvent
from shared.settings import AppConfig
from tests.difysim.config import SimConfig
from tests.difysim.testing import in_process, register
from tests.unit.test_difysim_containers import loop_review_graph
from tests.unit.test_difysim_newer_forms import WRITER_LLM, form_graph

NEWER = SimConfig(dify_version="1.17")


@contextlib.asynccontextmanager
async def dify_for(graph: dict):
    async with in_process(NEWER) as http:
        auth = await register(http, graph)
        app = AppConfig(name="t", checkpoint_token="cp-token-0001", dify_base_url="http://difysim",
                        dify_api_key=auth["Authorization"].split()[1])
        async with DifyClient(app, transport=http._transport) as dify:  # the simulator's ASGI transport
            dify.http = http  # type: ignore[attr-defined]
            yield dify


def test_a_paused_form_with_select_and_file_inputs_is_parsed_into_typed_inputs():
    async def scenario():
        async with dify_for(form_graph()) as dify:
            answer = await dify.run({"topic": "Solar"}, user="alice")
            async with dify.stream_run({"topic": "Wind"}, user="alice") as stream:
                events = [e async for e in stream]
            return answer, events

    answer, events = asyncio.run(scenario())
    assert answer.is_paused
    reason = answer.data.reasons[0]
    assert isinstance(reason, PauseReason)
    kinds = {i.output_variable_name: i for i in reason.form_inputs}
    assert [i.type for i in reason.form_inputs] == ["paragraph", "select", "file", "file-list"]
    assert kinds["choice"].choices == ["ship", "hold"] and kinds["refs"].max_length == 3
    assert all(i.known for i in reason.form_inputs)
    required = next(e for e in events if e.event == "human_input_required")
    assert [i["type"] for i in required.data["inputs"]] == ["paragraph", "select", "file", "file-list"]


def test_a_submit_with_select_and_files_is_answered_and_the_filled_event_carries_submitted_data():
    async def scenario():
        async with dify_for(form_graph()) as dify:
            answer = await dify.run({"topic": "Solar"}, user="alice")
            token, run_id = answer.data.reasons[0].form_token, answer.workflow_run_id
            key = {"Authorization": f"Bearer {dify.app.dify_api_key}"}
            uploaded = (await dify.http.post("/v1/files/upload", headers=key, data={"user": "alice"},
                                             files={"file": ("r.pdf", b"%PDF-1.4 x", "application/pdf")})).json()
            inputs = {"note": "ok", "choice": "hold",
                      "doc": {"transfer_method": "local_file", "upload_file_id": uploaded["id"]},
                      "refs": [{"transfer_method": "remote_url", "url": "https://example.com/spec.docx"}]}

            async def follow() -> list[StreamEvent]:
                async with dify.events(run_id, "alice", include_state_snapshot=True, continue_on_pause=True) as s:
                    return [e async for e in s]

            # The ASGI transport hands the answer over once the stream ended: follow while we submit.
            following = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            submitted = await dify.form_submit(token, inputs, "approve", "alice")
            return submitted, await asyncio.wait_for(following, 20), inputs

    submitted, events, inputs = asyncio.run(scenario())
    assert submitted == {}
    filled = next(e for e in events if e.event == "human_input_form_filled")
    assert filled.submitted_data == inputs
    assert events[-1].event == "workflow_finished" and events[-1].run_status == "succeeded"


def test_reasoning_chunks_are_parsed_as_chunks_with_no_state():
    import json

    graph = json.loads(WRITER_LLM.read_text())["graph"]

    async def scenario():
        async with dify_for(graph) as dify:
            async with dify.stream_run({"topic": "Solar"}, user="alice") as stream:
                return [e async for e in stream]

    events = asyncio.run(scenario())
    chunks = [e for e in events if e.event == "reasoning_chunk"]
    assert chunks and all(e.is_chunk for e in chunks) and chunks[-1].data["is_final"] is True
    assert not any(e.is_chunk for e in events if e.event.startswith(("node_", "workflow_")))


def test_human_input_inside_a_loop_says_its_loop_and_round():
    async def scenario():
        async with dify_for(loop_review_graph()) as dify:
            async with dify.stream_run({"topic": "t"}, user="u") as stream:
                return [e async for e in stream]

    events = asyncio.run(scenario())
    review = next(e for e in events if e.event == "node_started" and e.data["node_id"] == "review")
    assert review.container["loop_id"] == "loop"
    assert events[-1].event == "workflow_paused"


def test_an_input_type_nobody_knows_parses_and_says_so():
    reason = PauseReason.model_validate({"TYPE": "human_input_required", "inputs": [
        {"type": "signature", "output_variable_name": "sig", "pen": "blue"}, {"no": "type"}]})
    [sig] = reason.form_inputs
    assert isinstance(sig, FormInput) and not sig.known and sig.model_extra == {"pen": "blue"}
    assert StreamEvent(event="human_input_form_filled", data={"submitted_data": "x"}).submitted_data is None
