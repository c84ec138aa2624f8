"""Every broken request gets its status and error code; nothing crashes; bots' bad messages go to the DLQ."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.conftest import make_settings
from tests.integration.stack import Stack, run

pytestmark = pytest.mark.integration


def call(run_id=None, **extra):
    return {"workflow_run_id": run_id or str(uuid.uuid4()), "node_id": "draft", "node_output": "text", **extra}


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-route"])
def test_checkpoint_call_errors_have_their_status_and_code(sqlite_url, rabbitmq_url, fast_path):
    # The checkpoint call is served as plain ASGI (services/ingest/fastpath.py) in front of FastAPI's
    # route; both give the same answers.
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url, body_limit_bytes=2048), fast_path=fast_path) as s:
            post = s.http.post
            auth = {"Authorization": "Bearer cp-test-token-0001"}
            unauthorized = await post("/v1/checkpoints", json=call())
            assert error_of(unauthorized) == (401, "unauthorized")
            assert unauthorized.headers["date"].endswith(" GMT")  # served before FastAPI, dated all the same
            assert error_of(await s.checkpoint_call(call(), token="wrong-token-123")) == (401, "unauthorized")
            assert error_of(await s.checkpoint_call(call(), token="rv-alice-token")) == (401, "unauthorized")
            truncated = b'{"workflow_run_id": '
            assert error_of(await post("/v1/checkpoints", content=truncated, headers=auth)) == (400, "invalid_json")
            assert error_of(await post("/v1/checkpoints", content=b"", headers=auth)) == (400, "invalid_json")
            assert error_of(await post("/v1/checkpoints", content=b"[1,2]", headers=auth)) == (400, "invalid_json")
            r = await s.checkpoint_call({"node_id": "draft"})
            assert error_of(r) == (400, "invalid_field") and r.json()["error"]["field"] == "workflow_run_id"
            r = await s.checkpoint_call(call(round="two"))
            assert error_of(r) == (400, "invalid_field") and r.json()["error"]["field"] == "round"
            r = await s.checkpoint_call(call(on_timeout="default"))
            assert error_of(r) == (400, "invalid_field") and r.json()["error"]["field"] == "default_output"
            r = await s.checkpoint_call(call(mode="later"))
            assert r.json()["error"]["field"] == "mode"
            big = call(node_output="x" * 5000)
            assert error_of(await s.checkpoint_call(big)) == (413, "body_too_large")
            assert error_of(await post("/v1/nowhere", json={}, headers=auth)) == (404, "not_found")
            put = await s.http.put("/v1/checkpoints", json=call(), headers=auth)
            assert error_of(put) == (405, "method_not_allowed")
            r = await s.checkpoint_call(call(timeout_s=0.2, on_timeout="approve"))
            assert r.status_code == 200 and r.json()["action"] == "approve" and r.json()["reason"] == "timeout"

    run(scenario())


def test_deeply_nested_and_odd_unicode_bodies_get_clear_answers(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            auth = {"Authorization": "Bearer cp-test-token-0001"}
            deep = '{"workflow_run_id": "r1", "node_id": "n", "node_output": ' + "[" * 100_000 + "]" * 100_000 + "}"
            too_deep = await s.http.post("/v1/checkpoints", content=deep.encode(), headers=auth)
            assert error_of(too_deep) == (400, "invalid_json")
            odd = call(node_output="\u0000 \ud800 ☃ \"quoted\" ' \n", timeout_s=0.2, message="ok\u2028")
            r = await s.checkpoint_call(odd)
            assert r.status_code == 200 and r.json()["reason"] == "timeout"
            bad_bytes = b'{"workflow_run_id": "r2", "node_id": "n", "node_output": "\xff\xfe"}'
            assert error_of(await s.http.post("/v1/checkpoints", content=bad_bytes, headers=auth))[0] == 400


def test_dify_quirks_are_tolerated_numbers_as_strings_and_a_body_that_is_a_json_string(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            run_id = str(uuid.uuid4())
            inner = json.dumps(call(run_id, round="1", timeout_s="0.3", assignees="alice, bob"))
            r = await s.http.post("/v1/checkpoints", content=json.dumps(inner).encode(),
                                  headers={"Authorization": "Bearer cp-test-token-0001"})
            assert r.status_code == 200, r.text
            assert r.json()["reason"] == "timeout"

    run(scenario())


def test_decision_errors_404_409_422_and_auth(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            assert error_of(await s.decide(str(uuid.uuid4()), {"action": "approve"})) == (404, "not_found")
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call(call(run_id, max_rounds=1,
                                                              assignees=["bob", "group:editors"])))
            cp = await s.wait_open(run_id)
            cid = cp["id"]
            assert error_of(await s.decide(cid, {"action": "approve"}, reviewer="alice")) == (422, "not_assignee")
            assert error_of(await s.decide(cid, {"action": "revise"}, reviewer="bob")) == (422, "feedback_required")
            assert error_of(await s.decide(cid, {"action": "revise", "feedback": "x"}, reviewer="bob")) == \
                (422, "max_rounds_reached")
            assert error_of(await s.decide(cid, {"action": "edit"}, reviewer="bob")) == (422, "output_required")
            assert error_of(await s.decide(cid, {"action": "maybe"}, reviewer="bob")) == (400, "invalid_field")
            assert error_of(await s.decide(cid, {"action": "approve", "actor": "bob"}, reviewer="alice")) == \
                (403, "actor_mismatch")
            r = await s.http.post(f"/v1/checkpoints/{cid}/decision", json={"action": "approve"},
                                  headers={"Authorization": "Bearer cp-test-token-0001"})
            assert error_of(r) == (401, "unauthorized")  # a Dify app token cannot decide
            # carol is in group "editors": allowed.
            assert (await s.decide(cid, {"action": "edit", "output": None}, reviewer="carol")).status_code == 200
            assert (await held).json()["output"] is None
            r = await s.decide(cid, {"action": "approve"}, reviewer="bob")
            assert error_of(r) == (409, "already_resolved")
            assert r.json()["error"]["winning_decision"]["decided_by"] == "carol"
            assert error_of(await s.get("/v1/checkpoints?status=weird")) == (400, "invalid_field")
            assert error_of(await s.get(f"/v1/checkpoints/{uuid.uuid4()}")) == (404, "not_found")

    run(scenario())


def test_a_bot_decision_on_the_exchange_is_applied(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call(call(run_id)))
            await s.wait_open(run_id)
            await s.publish_bot_decision({"workflow_run_id": run_id, "node_id": "draft", "action": "revise",
                                          "feedback": "from slack", "actor": "carol", "channel": "console"})
            answer = (await held).json()
            assert (answer["action"], answer["feedback"], answer["decided_by"]) == ("revise", "from slack", "carol")
            cp = (await s.get(f"/v1/checkpoints?run_id={run_id}")).json()["checkpoints"][0]
            assert cp["decision_channel"] == "bot:testbot"  # observed, not the "console" the message claims

    run(scenario())


def test_invalid_bot_messages_land_in_the_dlq_with_the_reason_and_do_not_block(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            await s.publish_bot_decision(b"{not json")
            await s.publish_bot_decision({"action": "approve"})  # no actor
            await s.publish_bot_decision({"checkpoint_id": str(uuid.uuid4()), "action": "approve", "actor": "bot"})
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call(call(run_id)))
            cp = await s.wait_open(run_id)
            await s.publish_bot_decision({"checkpoint_id": cp["id"], "action": "approve", "actor": "bot"})
            assert (await held).json()["action"] == "approve"  # the queue was not blocked
            dlq = f"{s.settings.names.decisions_queue}.dlq"
            reasons = []
            for _ in range(50):
                if await s.tap.queue_depth(dlq) >= 3:
                    break
                await asyncio.sleep(0.1)
            while (msg := await s.tap.get_one(dlq)) is not None:
                reasons.append(msg.headers["x-hitl-reason"])
            assert len(reasons) == 3
            assert any(r.startswith("invalid decision") and "actor" in r for r in reasons)
            assert any(r.startswith("invalid decision") for r in reasons)
            assert any(r.startswith("not_found") for r in reasons)

    run(scenario())
