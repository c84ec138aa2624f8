"""The Dify client reads the recorded streams of real Dify 1.14.1 (shared/dify-fixtures): events in
order, raw bytes forwarded untouched, every recorded SSE line parsed."""
from __future__ import annotations

import json

import httpx
import pytest

from shared.dify import (
    parse_sse_lines,
    parse_sse_text,
)
from shared.dify.sse import SseSplitter
from tests.unit.dify_support import (
    FIXTURES,
    make_client,
    run,
    sse_bytes,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason=f"no Dify fixtures at {FIXTURES}")


# ---------------------------------------------------------------- streams from the recordings
def stream_handler(sse_name: str, seen: list | None = None):
    form = {"user_input_form": [{"text-input": {"variable": "topic", "label": "topic", "required": True,
                                                "max_length": 256, "default": ""}}]}

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/v1/parameters":
            return httpx.Response(200, json=form)
        return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"},
                              content=sse_bytes(sse_name))
    return handler


def test_streaming_run_of_fixture_02_yields_events_in_order_ending_with_workflow_finished():
    seen: list[httpx.Request] = []

    async def scenario():
        async with make_client(stream_handler("02-http-ok-streaming/stream.sse", seen)) as dify:
            async with dify.stream_run({"topic": "stream test"}, user="fx-user-1") as stream:
                events = [event async for event in stream]
            return stream, events

    stream, events = run(scenario())
    names = [e.event for e in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    assert names.index("text_chunk") < max(i for i, n in enumerate(names) if n == "node_finished")
    assert "ping" not in names
    assert events[0].data["reason"] == "initial" and events[0].data["inputs"]["topic"] == "stream test"
    assert events[-1].run_status == "succeeded" and stream.terminal_event is events[-1]
    assert stream.task_id == "2199fed7-ee52-4205-ba83-47afb27327e0"
    assert stream.workflow_run_id == "1af9d8fe-3d81-41aa-b6d4-69e27eaecf1a"
    assert [r.url.path for r in seen] == ["/v1/parameters", "/v1/workflows/run"]
    assert json.loads(seen[1].content)["response_mode"] == "streaming"


def test_iter_raw_forwards_the_stream_byte_for_byte_pings_included():
    async def scenario():
        async with make_client(stream_handler("02-http-ok-streaming/stream.sse")) as dify:
            async with dify.stream_run({"topic": "x"}, user="u", validate=False) as stream:
                return [chunk async for chunk in stream.iter_raw()]

    chunks = run(scenario())
    recorded = sse_bytes("02-http-ok-streaming/stream.sse")
    assert b"".join(chunks) == recorded
    assert chunks[0] == b"event: ping\n\n" and len(chunks) == recorded.count(b"\n\n")


@pytest.mark.parametrize("sse_name", sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.sse"))
                         if FIXTURES.exists() else [])
def test_every_recorded_sse_line_parses(sse_name):
    raw_lines = [line for line in sse_bytes(sse_name).decode().split("\n\n") if line]
    events = parse_sse_text(sse_bytes(sse_name).decode())
    assert len(events) == len(raw_lines)
    for event in events:
        assert event.event == "ping" or (event.workflow_run_id and isinstance(event.data, dict))


def test_loop_and_retry_streams_carry_their_event_kinds():
    loop = [e.event for e in parse_sse_text(sse_bytes("07-loop-revise/stream.sse").decode())]
    assert {"loop_started", "loop_next", "loop_completed"} <= set(loop) and loop[-1] == "workflow_finished"
    retry = parse_sse_text(sse_bytes("03-http-503-retry/stream.sse").decode())
    retries = [e for e in retry if e.event == "node_retry"]
    assert [e.data["retry_index"] for e in retries] == [1, 2]
    assert retry[-1].run_status == "partial-succeeded" and retry[-1].data["exceptions_count"] == 2


def test_reattach_to_a_finished_run_parses_the_synthesized_event_with_spaced_json():
    seen: list[httpx.Request] = []

    async def scenario():
        handler = stream_handler("08-human-input-blocking/events-reattach-after-finish.sse", seen)
        async with make_client(handler) as dify:
            stream = dify.events("a44746c1-2414-4dca-8e15-7c2ab733dbdc", "fx-user-hi", include_state_snapshot=True)
            return [event async for event in stream]

    events = run(scenario())
    assert len(events) == 1 and events[0].event == "workflow_finished"
    assert events[0].task_id == events[0].workflow_run_id == "a44746c1-2414-4dca-8e15-7c2ab733dbdc"
    assert seen[0].url.path == "/v1/workflow/a44746c1-2414-4dca-8e15-7c2ab733dbdc/events"
    assert dict(seen[0].url.params) == {"user": "fx-user-hi", "include_state_snapshot": "true"}


def test_streaming_pause_of_fixture_09_ends_the_stream_at_workflow_paused():
    async def scenario():
        async with make_client(stream_handler("09-human-input-streaming/stream.sse")) as dify:
            async with dify.stream_run({"topic": "Press release"}, user="fx-user-hi") as stream:
                return stream, [e async for e in stream]

    stream, events = run(scenario())
    assert [e.event for e in events][-2:] == ["human_input_required", "workflow_paused"]
    assert stream.terminal_event.run_status == "paused"
    assert events[-2].data["form_token"] and events[-1].data["paused_nodes"] == ["review"]


def test_continue_on_pause_reattach_reads_through_the_pause_to_the_resumed_finish():
    async def scenario():
        async with make_client(stream_handler("08-human-input-blocking/events-reattach-continue_on_pause.sse")) as dify:
            stream = dify.events("a44746c1-2414-4dca-8e15-7c2ab733dbdc", "fx-user-hi", True, True)
            return [e async for e in stream]

    names = [e.event for e in run(scenario())]
    assert "workflow_paused" in names and "human_input_form_filled" in names and names[-1] == "workflow_finished"


def test_stop_fixture_stream_ends_with_workflow_finished_stopped():
    events = parse_sse_text(sse_bytes("11-stop/stream.sse").decode())
    assert (events[-1].run_status, events[-1].data["error"]) == ("stopped", "Stopped by user.")


def test_sse_parser_handles_pings_error_events_comments_and_garbage():
    assert parse_sse_lines(["event: ping"]).is_ping
    error = parse_sse_lines(['data: {"event":"error","workflow_run_id":"r","code":"invalid_param",'
                             '"message":"bad","status":400}'])
    assert (error.event, error.code, error.message, error.status, error.data) == ("error", "invalid_param", "bad",
                                                                                 400, {})
    assert parse_sse_lines([": keep-alive comment"]) is None
    assert parse_sse_lines(["data: <html>oops"]) is None
    assert parse_sse_lines(["data: [1, 2]"]) is None
    assert parse_sse_lines(["data:{\"event\":\"x\",\"data\":\"not an object\"}"]).data == {}


def test_sse_splitter_cuts_events_across_chunk_boundaries_and_keeps_the_bytes():
    original = sse_bytes("02-http-ok-streaming/stream.sse")
    stream = original.replace(b"\n\n", b"\r\n\r\n", 2)
    splitter, blocks = SseSplitter(), []
    for i in range(0, len(stream), 7):
        blocks.extend(splitter.feed(stream[i:i + 7]))
    assert b"".join(blocks) == stream and len(blocks) == original.count(b"\n\n")


def test_an_error_event_ends_the_stream_and_is_yielded():
    body = (b"event: ping\n\n" b'data: {"event":"error","workflow_run_id":"r1","code":"internal_server_error",'
            b'"message":"boom","status":500}\n\n' b'data: {"event":"never_read"}\n\n')

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async def scenario():
        async with make_client(handler) as dify:
            async with dify.stream_run({}, user="u", validate=False) as stream:
                return stream, [e async for e in stream]

    stream, events = run(scenario())
    assert [e.event for e in events] == ["error"] and stream.terminal_event.code == "internal_server_error"
