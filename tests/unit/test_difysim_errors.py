"""The simulator answers the recorded error cases of Dify 1.14.1 (fixture 12-errors) exactly."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.difysim.config import SimConfig
from tests.difysim.testing import echo_graph, in_process, register

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
ERRORS = SHARED / "dify-fixtures" / "12-errors"
# Cases that need more than one request; they have their own tests below.
SPECIAL = {"run-of-other-app.json", "run-without-response_mode.json"}
SIMPLE_CASES = sorted(p.name for p in ERRORS.glob("*.json")
                      if p.name not in SPECIAL and "request" in json.loads(p.read_text()))


async def replay(client, recorded_request: dict, auth: dict):
    headers = {k: v for k, v in recorded_request.get("headers", {}).items() if k.lower() != "content-type"}
    if headers.get("Authorization", "").endswith("app-REDACTED"):
        headers.update(auth)
    elif "Authorization" in headers:
        headers["Authorization"] = headers["Authorization"].split(" (")[0]  # drop the fixture's remark
    url = urlsplit(recorded_request["url"])
    path = url.path + (f"?{url.query}" if url.query else "")
    body = recorded_request.get("body")
    return await client.request(recorded_request["method"], path, headers=headers,
                                json=body if body is not None else None)


@pytest.mark.parametrize("case", SIMPLE_CASES)
def test_error_answer_matches_the_recording(case):
    recorded = json.loads((ERRORS / case).read_text())
    expected = recorded["response"]

    async def scenario():
        async with in_process() as client:
            auth = await register(client, echo_graph())
            return await replay(client, recorded["request"], auth)

    answer = asyncio.run(scenario())
    assert answer.status_code == expected["status"]
    if isinstance(expected["body"], dict):
        assert answer.json() == expected["body"]
        assert list(answer.json()) == list(expected["body"])  # key order too (the 500 differs)
    else:
        assert answer.text == expected["body"]
        assert answer.headers["content-type"].startswith("text/html")
    recorded_headers = {k.lower(): v for k, v in expected["headers"]}
    for name in ("www-authenticate", "x-version"):
        assert answer.headers.get(name) == recorded_headers.get(name)


def test_run_of_another_app_is_not_found():
    async def scenario():
        async with in_process() as client:
            mine = await register(client, echo_graph(), name="mine")
            theirs = await register(client, echo_graph(), name="theirs")
            run = await client.post("/v1/workflows/run", json={"inputs": {"topic": "x"}, "user": "u"}, headers=theirs)
            return await client.get(f"/v1/workflows/run/{run.json()['workflow_run_id']}", headers=mine)

    answer = asyncio.run(scenario())
    assert (answer.status_code, answer.json()) == (404, {"code": "not_found", "message": "Workflow run not found.",
                                                         "status": 404})


def test_run_without_response_mode_is_a_blocking_run():
    async def scenario():
        async with in_process() as client:
            auth = await register(client, echo_graph())
            return await client.post("/v1/workflows/run", json={"inputs": {"topic": "no mode"}, "user": "u"},
                                     headers=auth)

    answer = asyncio.run(scenario())
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.json()["data"]["status"] == "succeeded"


def test_streaming_run_with_a_missing_input_answers_one_ping_and_then_nothing():
    async def scenario():
        async with in_process(SimConfig(sse_idle_close_s=0.2)) as client:
            auth = await register(client, echo_graph())
            return await client.post("/v1/workflows/run", headers=auth,
                                     json={"inputs": {}, "response_mode": "streaming", "user": "u"})

    answer = asyncio.run(scenario())
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert answer.text == "event: ping\n\n"
