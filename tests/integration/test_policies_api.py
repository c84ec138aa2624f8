"""Decision policies through the HTTP API and the real RabbitMQ: a quorum answered vote by vote,
claim / release / reassign, bulk preview then apply, a held call that could not outlive Dify's run
refused at open — on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import make_settings
from tests.integration.stack import Stack, run

pytestmark = pytest.mark.integration


def body(run_id: str, **extra):
    return {"workflow_run_id": run_id, "node_id": "draft", "node_output": "draft text", **extra}


def test_a_quorum_holds_the_call_until_the_second_approval_and_says_its_progress(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call(body(
                run_id, assignees=["alice", "bob", "carol"], approval={"mode": "m_of_n", "m": 2})))
            cp = await s.wait_open(run_id)
            assert cp["policy"]["required"] == 2 and cp["policy"]["electorate"] == ["alice", "bob", "carol"]
            first = await s.decide(cp["id"], {"action": "approve"}, reviewer="alice")
            assert first.status_code == 200 and first.json()["status"] == "voted"
            assert first.json()["progress"]["progress"] == "1 of 2 approved: alice"
            again = await s.decide(cp["id"], {"action": "approve"}, reviewer="alice")
            assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
            await asyncio.sleep(0.3)
            assert not held.done()
            second = await s.decide(cp["id"], {"action": "approve"}, reviewer="bob")
            assert second.json()["status"] == "applied"
            answer = (await held).json()
            assert answer["action"] == "approve" and answer["decided_by"] == "bob"
            await s.wait_event("checkpoint.voted", id=cp["id"])

    run(scenario())


def test_claim_release_and_reassign_are_answered_and_recorded(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call(body(run_id, assignees=["alice"])))
            cp = await s.wait_open(run_id)
            claimed = await s.post(f"/v1/checkpoints/{cp['id']}/claim", {"note": "mine"})
            assert claimed.status_code == 200 and claimed.json()["checkpoint"]["claimed_by"] == "alice"
            other = await s.post(f"/v1/checkpoints/{cp['id']}/claim", {}, reviewer="bob")
            assert other.status_code == 422 and other.json()["error"]["code"] == "not_assignee"
            released = await s.post(f"/v1/checkpoints/{cp['id']}/release", {})
            assert released.json()["checkpoint"]["claimed_by"] is None
            moved = await s.post(f"/v1/checkpoints/{cp['id']}/reassign", {"to": "bob", "note": "away"})
            assert moved.json()["checkpoint"]["assignees"] == ["bob"]
            assert (await s.decide(cp["id"], {"action": "approve"}, reviewer="bob")).status_code == 200
            assert (await held).json()["decided_by"] == "bob"
            shown = (await s.get(f"/v1/checkpoints/{cp['id']}")).json()
            assert [h["kind"] for h in shown["history"]] == ["opened", "claimed", "released", "reassigned", "decision"]

    run(scenario())


def test_a_bulk_preview_lists_exactly_what_apply_then_decides_item_by_item(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            runs = [str(uuid.uuid4()) for _ in range(50)]
            held = [asyncio.create_task(s.checkpoint_call(body(r, mode="detached", node_id="bulk")))
                    for r in runs[:48]]
            held += [asyncio.create_task(s.checkpoint_call(body(r, mode="detached", node_id="bulk",
                                                                assignees=["carol"]))) for r in runs[48:]]
            await asyncio.gather(*held)
            preview = await s.post("/v1/checkpoints/bulk-decision",
                                   {"filter": {"node_id": "bulk"}, "action": "approve", "preview": True})
            assert preview.status_code == 200 and preview.json()["count"] == 50
            assert sum(not c["may_decide"] for c in preview.json()["checkpoints"]) == 2
            applied = await s.post("/v1/checkpoints/bulk-decision",
                                   {"ids": [c["id"] for c in preview.json()["checkpoints"]], "action": "approve"})
            result = applied.json()
            assert result["counts"] == {"applied": 48, "refused": 2}
            assert {r["code"] for r in result["results"] if r["status"] == "refused"} == {"not_assignee"}
            listed = (await s.get("/v1/checkpoints?status=resolved&limit=100")).json()
            assert listed["total"] == 48

    run(scenario())


def test_a_held_checkpoint_that_cannot_outlive_difys_run_is_refused_at_open(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            late = await s.checkpoint_call(body(str(uuid.uuid4()), timeout_s=3600))
            assert late.status_code == 422 and late.json()["error"]["code"] == "beyond_run_limit"
            step = await s.checkpoint_call(body(str(uuid.uuid4()), escalate=[{"after_s": 1500, "apply": "abort"}]))
            assert step.status_code == 422 and "escalate after_s 1500" in step.json()["error"]["message"]
            detached = await s.checkpoint_call(body(str(uuid.uuid4()), timeout_s=3600, mode="detached"))
            assert detached.status_code == 200 and detached.json()["action"] == "pending"

    run(scenario())
