"""The Dify client's own behaviour: retries and backoff, stalled streams, local refusals (run ids,
inputs), metrics, base URLs and several apps at once. Rate and concurrency limits:
test_ratelimit_on_the_wire.py."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client import REGISTRY

from shared.dify import (
    DifyBadRequest,
    DifyClient,
    DifyNotFound,
    DifyRateLimited,
    DifyServerError,
    DifyStreamStalled,
    DifyUnavailable,
    Parameters,
)
from shared.settings import AppConfig

RUN_ID = "b39f029a-8a16-4ffa-b350-573e3971a8cc"
RECORD = {"id": RUN_ID, "workflow_id": "w", "status": "succeeded", "inputs": "{\"topic\": \"x\"}", "outputs": {},
          "error": None, "total_steps": 3, "total_tokens": 0, "created_at": 1, "finished_at": 2, "elapsed_time": 0.1}
BUSY = {"code": "service_unavailable", "message": "Service Unavailable", "status": 503}
FORM = {"user_input_form": [
    {"text-input": {"variable": "topic", "label": "topic", "required": True, "max_length": 10, "default": ""}},
    {"paragraph": {"variable": "notes", "label": "notes", "required": False, "max_length": 20, "default": ""}},
    {"number": {"variable": "count", "label": "count", "required": False, "default": ""}},
    {"select": {"variable": "tone", "label": "tone", "required": False, "options": ["dry", "warm"], "default": ""}},
    {"file": {"variable": "doc", "label": "doc", "required": False}}]}
SSE = {"content-type": "text/event-stream; charset=utf-8"}


def make_client(handler, name: str = "t", base_url: str = "http://dify.test", key: str = "app-test-key",
                **options) -> DifyClient:
    app = AppConfig(name=name, checkpoint_token="cp-token-0001", dify_base_url=base_url, dify_api_key=key)
    return DifyClient(app, transport=httpx.MockTransport(handler), **options)


def record_sleeps(client: DifyClient) -> list[float]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client.requester.sleep = fake_sleep
    return sleeps


def answers(*responses):
    """A handler giving these answers in turn (an exception instance is raised), counting calls."""
    queue = list(responses)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, calls


def run(coroutine):
    return asyncio.run(coroutine)


# ---------------------------------------------------------------- retries
def test_get_run_retries_a_503_with_full_jitter_then_succeeds():
    handler, calls = answers(httpx.Response(503, json=BUSY), httpx.Response(503, json=BUSY),
                             httpx.Response(200, json=RECORD))

    async def scenario():
        async with make_client(handler, backoff_base_s=0.5, backoff_cap_s=8) as dify:
            sleeps = record_sleeps(dify)
            dify.requester.random = lambda: 0.5
            return await dify.get_run(RUN_ID), sleeps

    record, sleeps = run(scenario())
    assert record.status == "succeeded" and len(calls) == 3
    assert sleeps == [0.25, 0.5]  # 0.5 × uniform draw of [0, 0.5·2^attempt]


def test_backoff_is_full_jitter_capped_at_the_ceiling():
    client = make_client(lambda r: httpx.Response(200), backoff_base_s=0.5, backoff_cap_s=8)
    error = DifyUnavailable(None, "timeout", "x")
    client.requester.random = lambda: 1.0
    assert [client.requester.backoff_s(n, error) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    client.requester.random = lambda: 0.0
    assert client.requester.backoff_s(3, error) == 0.0


def test_get_run_raises_unavailable_after_its_retries_when_dify_is_unreachable():
    handler, calls = answers(httpx.ConnectError("Connection refused"))

    async def scenario():
        async with make_client(handler, retries=3) as dify:
            sleeps = record_sleeps(dify)
            with pytest.raises(DifyUnavailable) as caught:
                await dify.get_run(RUN_ID)
            return caught.value, sleeps

    error, sleeps = run(scenario())
    assert error.code == "connection_error" and len(calls) == 4 and len(sleeps) == 3


def test_a_timeout_is_reported_as_unavailable():
    handler, calls = answers(httpx.ReadTimeout("slow"))

    async def scenario():
        async with make_client(handler, retries=1) as dify:
            record_sleeps(dify)
            with pytest.raises(DifyUnavailable) as caught:
                await dify.logs()
            return caught.value

    assert run(scenario()).code == "timeout" and len(calls) == 2


@pytest.mark.parametrize("call", ["run", "stop", "form_submit"])
def test_posts_are_never_retried(call):
    handler, calls = answers(httpx.Response(503, json=BUSY))

    async def scenario():
        async with make_client(handler, retries=3) as dify:
            record_sleeps(dify)
            with pytest.raises(DifyServerError):
                if call == "run":
                    await dify.run({"topic": "x"}, "u")
                elif call == "stop":
                    await dify.stop("task-1", "u")
                else:
                    await dify.form_submit("tok", {}, "approve", "u")

    run(scenario())
    assert len(calls) == 1


def test_a_run_whose_connection_drops_is_not_repeated():
    handler, calls = answers(httpx.RemoteProtocolError("peer closed"))

    async def scenario():
        async with make_client(handler, retries=3) as dify:
            with pytest.raises(DifyUnavailable):
                await dify.run({"topic": "x"}, "u")

    run(scenario())
    assert len(calls) == 1


def test_a_429_on_a_get_waits_for_retry_after():
    handler, calls = answers(
        httpx.Response(429, headers={"Retry-After": "2"},
                       json={"code": "too_many_requests", "message": "Too many requests.", "status": 429}),
        httpx.Response(200, json=FORM))

    async def scenario():
        async with make_client(handler) as dify:
            sleeps = record_sleeps(dify)
            return await dify.parameters(), sleeps

    parameters, sleeps = run(scenario())
    assert sleeps == [2.0] and len(calls) == 2 and "topic" in parameters.input_specs()


def test_a_429_on_a_post_raises_with_retry_after():
    handler, calls = answers(httpx.Response(429, headers={"Retry-After": "3"},
                                            json={"code": "rate_limit_error", "message": "quota", "status": 429}))

    async def scenario():
        async with make_client(handler) as dify:
            with pytest.raises(DifyRateLimited) as caught:
                await dify.run({"topic": "x"}, "u")
            return caught.value

    error = run(scenario())
    assert (error.code, error.retry_after_s, len(calls)) == ("rate_limit_error", 3.0, 1)


def test_a_retry_after_too_long_to_sleep_through_is_raised_at_once():
    handler, calls = answers(httpx.Response(429, headers={"Retry-After": "3600"},
                                            json={"code": "too_many_requests", "message": "busy", "status": 429}))

    async def scenario():
        async with make_client(handler) as dify:
            record_sleeps(dify)
            with pytest.raises(DifyRateLimited):
                await dify.get_run(RUN_ID)

    run(scenario())
    assert len(calls) == 1


# ---------------------------------------------------------------- local refusals
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "123", "b39f029a-8a16-4ffa-b350"])
def test_a_non_uuid_run_id_is_refused_without_any_http_call(bad_id):
    handler, calls = answers(httpx.Response(500, json={"message": "Internal Server Error", "code": "unknown",
                                                       "status": 500}))

    async def scenario():
        async with make_client(handler) as dify:
            with pytest.raises(DifyBadRequest) as caught:
                await dify.get_run(bad_id)
            with pytest.raises(DifyBadRequest):
                dify.events(bad_id, "u")
            return caught.value

    assert run(scenario()).code == "invalid_run_id"
    assert calls == []


@pytest.mark.parametrize("inputs, named", [
    ({}, "topic is required"),
    ({"topic": ""}, "topic is required"),
    ({"topic": 123}, "topic in input form must be a string"),
    ({"topic": "x" * 11}, "topic in input form must be less than 10"),
    ({"topic": "ok", "notes": ["a"]}, "notes in input form must be a string"),
    ({"topic": "ok", "notes": "y" * 21}, "notes in input form must be less than 20"),
    ({"topic": "ok", "count": "many"}, "count in input form must be a valid number"),
    ({"topic": "ok", "count": True}, "count in input form must be a valid number"),
    ({"topic": "ok", "tone": "loud"}, "tone in input form must be one of"),
    ({"topic": "ok", "tone": 1}, "tone in input form must be a string"),
])
def test_bad_inputs_are_refused_naming_the_input(inputs, named):
    handler, _ = answers(httpx.Response(200, json=FORM))

    async def scenario():
        async with make_client(handler) as dify:
            with pytest.raises(DifyBadRequest) as caught:
                await dify.validate_inputs(inputs)
            return caught.value

    error = run(scenario())
    assert error.code == "invalid_inputs" and named in error.message


def test_good_inputs_pass_and_the_parameters_are_fetched_once_per_minute():
    handler, calls = answers(httpx.Response(200, json=FORM))

    async def scenario():
        async with make_client(handler) as dify:
            await dify.validate_inputs({"topic": "ok", "count": "3", "tone": "warm", "extra": {"ignored": 1}})
            await dify.validate_inputs({"topic": "ok", "count": 2.5, "notes": ""})
            await dify.parameters(refresh=True)

    run(scenario())
    assert len(calls) == 2


def test_input_specs_read_the_user_input_form():
    specs = Parameters.model_validate(FORM).input_specs()
    assert specs["topic"] == {"type": "text-input", "required": True, "max_length": 10, "options": [], "default": ""}
    assert specs["tone"]["options"] == ["dry", "warm"] and specs["count"]["max_length"] is None
    assert set(specs) == {"topic", "notes", "count", "tone", "doc"}


def test_a_streaming_run_with_bad_inputs_is_refused_before_it_starts():
    handler, calls = answers(httpx.Response(200, json=FORM))

    async def scenario():
        async with make_client(handler) as dify:
            with pytest.raises(DifyBadRequest, match="topic is required"):
                async with dify.stream_run({}, user="u"):
                    pass

    run(scenario())
    assert [c.url.path for c in calls] == ["/v1/parameters"]


# ---------------------------------------------------------------- stalled streams
def ping_stream(pings: int, interval_s: float):
    async def body():
        for _ in range(pings):
            yield b"event: ping\n\n"
            await asyncio.sleep(interval_s)
        await asyncio.sleep(30)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=body())
    return handler


@pytest.mark.parametrize("pings, interval_s", [(1, 0), (100, 0.05)], ids=["one-ping-then-silence", "pings-only"])
def test_a_stream_of_nothing_but_pings_raises_stalled(pings, interval_s):
    async def scenario():
        async with make_client(ping_stream(pings, interval_s), idle_limit_s=0.3) as dify:
            with pytest.raises(DifyStreamStalled) as caught:
                async with dify.stream_run({"topic": "x"}, user="u", validate=False) as stream:
                    async for _ in stream:
                        pass
            return caught.value

    error = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert error.code == "stream_stalled" and "inputs" in error.message and "0.3 s" in error.message


def test_pings_after_the_run_started_are_fine_until_max_ping_only_s():
    async def body():
        yield b'data: {"event":"workflow_started","workflow_run_id":"r","task_id":"t","data":{}}\n\n'
        for _ in range(100):
            yield b"event: ping\n\n"
            await asyncio.sleep(0.05)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=body())

    async def scenario():
        async with make_client(handler, idle_limit_s=0.1, timeout_s=5) as dify:
            with pytest.raises(DifyStreamStalled) as caught:
                async with dify.stream_run({}, user="u", validate=False, max_ping_only_s=0.4) as stream:
                    async for _ in stream.events(include_pings=True):
                        pass
            return caught.value

    error = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert "since the last event" in error.message


def test_silence_after_the_run_started_is_a_broken_connection():
    async def body():
        yield b'data: {"event":"workflow_started","workflow_run_id":"r","task_id":"t","data":{}}\n\n'
        await asyncio.sleep(30)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=body())

    async def scenario():
        async with make_client(handler, timeout_s=0.2) as dify:
            with pytest.raises(DifyUnavailable) as caught:
                async with dify.stream_run({}, user="u", validate=False) as stream:
                    async for _ in stream:
                        pass
            return caught.value

    assert asyncio.run(asyncio.wait_for(scenario(), 10)).code == "stream_timeout"


def test_a_stream_answered_with_json_instead_of_events_raises_the_mapped_error():
    handler, _ = answers(httpx.Response(400, json={"code": "invalid_param", "message": "Arg user must be provided.",
                                                   "status": 400}))

    async def scenario():
        async with make_client(handler) as dify:
            with pytest.raises(DifyBadRequest, match="user"):
                async with dify.stream_run({}, user="u", validate=False):
                    pass

    run(scenario())


# ---------------------------------------------------------------- metrics, URLs, several apps
def test_calls_are_counted_by_route_template_never_by_id():
    handler, _ = answers(httpx.Response(404, json={"code": "not_found", "message": "Workflow run not found.",
                                                   "status": 404}))
    labels = {"app": "metered", "endpoint": "get_run", "status": "404"}
    before = REGISTRY.get_sample_value("hitl_dify_calls_total", labels) or 0

    async def scenario():
        async with make_client(handler, name="metered") as dify:
            with pytest.raises(DifyNotFound):
                await dify.get_run(RUN_ID)

    run(scenario())
    assert REGISTRY.get_sample_value("hitl_dify_calls_total", labels) - before == 1
    assert REGISTRY.get_sample_value("hitl_dify_latency_seconds_count", {"app": "metered", "endpoint": "get_run"}) >= 1


@pytest.mark.parametrize("base_url", ["http://dify.test", "http://dify.test/", "http://dify.test/v1",
                                      "http://dify.test/v1/"])
def test_the_base_url_may_end_with_or_without_v1(base_url):
    handler, calls = answers(httpx.Response(200, json=RECORD))

    async def scenario():
        async with make_client(handler, base_url=base_url) as dify:
            await dify.get_run(RUN_ID.upper())

    run(scenario())
    assert str(calls[0].url) == f"http://dify.test/v1/workflows/run/{RUN_ID}"


def test_several_apps_on_several_dify_servers_keep_their_own_keys_and_limits():
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["authorization"]))
        return httpx.Response(200, json=RECORD)

    async def scenario():
        one = make_client(handler, name="one", base_url="http://dify-a:5001", key="app-aaa")
        two = make_client(handler, name="two", base_url="http://dify-b:5001/v1", key="app-bbb", rate_per_s=1)
        async with one, two:
            await asyncio.gather(one.get_run(RUN_ID), two.get_run(RUN_ID), one.get_run(RUN_ID))
            return one.waits, two.waits

    assert run(scenario()) == (0, 0)
    assert sorted(seen) == [("dify-a", "Bearer app-aaa"), ("dify-a", "Bearer app-aaa"), ("dify-b", "Bearer app-bbb")]


def test_a_client_needs_a_base_url_and_a_key():
    with pytest.raises(ValueError, match="dify_base_url"):
        DifyClient(AppConfig(name="x", checkpoint_token="cp-token-0001"))


def test_run_body_carries_files_and_the_version_path():
    handler, calls = answers(httpx.Response(200, json={"task_id": "t", "workflow_run_id": RUN_ID,
                                                       "data": {"id": RUN_ID, "status": "failed", "error": "boom"}}))

    async def scenario():
        async with make_client(handler) as dify:
            return await dify.run({"topic": "x"}, "u", workflow_id="wf-1", files=[{"type": "image"}])

    answer = run(scenario())
    assert answer.data.status == "failed" and answer.data.error == "boom"  # HTTP 200 for a failed run
    assert calls[0].url.path == "/v1/workflows/wf-1/run"
    assert json.loads(calls[0].content) == {"inputs": {"topic": "x"}, "response_mode": "blocking", "user": "u",
                                            "files": [{"type": "image"}]}
