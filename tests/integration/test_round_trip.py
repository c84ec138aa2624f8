"""The checkpoint round trip against the real RabbitMQ, on SQLite and on PostgreSQL."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import make_settings
from tests.integration.stack import Stack, run

pytestmark = pytest.mark.integration


def body(run_id: str, **extra):
    return {"workflow_run_id": run_id, "node_id": "draft", "node_output": {"text": "first draft"},
            "message": "Check the draft", **extra}


def new_run() -> str:
    return str(uuid.uuid4())


def test_approve_releases_the_held_call_with_the_node_output(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = new_run()
            held = asyncio.create_task(s.checkpoint_call(body(run_id)))
            cp = await s.wait_open(run_id)
            opened = await s.wait_event("checkpoint.opened", workflow_run_id=run_id)
            assert opened["checkpoint"]["id"] == cp["id"]
            decided = await s.decide(cp["id"], {"action": "approve"})
            assert decided.status_code == 200, decided.text
            answer = await held
            assert answer.status_code == 200
            assert answer.text.startswith('{"action":"approve","checkpoint_id":')
            assert answer.json() == {"action": "approve", "checkpoint_id": cp["id"], "round": 1,
                                     "output": {"text": "first draft"}, "feedback": None, "decided_by": "alice",
                                     "reason": "decision"}
            await s.wait_event("checkpoint.resolved", id=cp["id"])
            shown = (await s.get(f"/v1/checkpoints/{cp['id']}")).json()
            assert [h["kind"] for h in shown["history"]] == ["opened", "decision"]
            assert shown["status"] == "resolved"

    run(scenario())


def test_revise_then_the_next_call_is_round_two_and_approve_ends_it(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = new_run()
            held = asyncio.create_task(s.checkpoint_call(body(run_id)))
            cp1 = await s.wait_open(run_id)
            assert (await s.decide(cp1["id"], {"action": "revise", "feedback": "shorter"})).status_code == 200
            first = (await held).json()
            assert (first["action"], first["round"], first["feedback"]) == ("revise", 1, "shorter")
            # The loop re-runs the node; its new output comes with no explicit round: it is round 2.
            held = asyncio.create_task(s.checkpoint_call(body(run_id, node_output={"text": "short"})))
            cp2 = await s.wait_open(run_id, round_=2)
            assert cp2["id"] != cp1["id"]
            assert (await s.decide(cp2["id"], {"action": "approve"}, reviewer="bob")).status_code == 200
            second = (await held).json()
            assert (second["action"], second["round"], second["output"]) == ("approve", 2, {"text": "short"})
            rounds = (await s.get(f"/v1/checkpoints/{cp2['id']}")).json()["rounds"]
            assert [(r["round"], r["action"]) for r in rounds] == [(1, "revise"), (2, "approve")]

    run(scenario())


def test_edit_answers_the_new_output_and_abort_answers_abort(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_a, run_b = new_run(), new_run()
            held_a = asyncio.create_task(s.checkpoint_call(body(run_a)))
            held_b = asyncio.create_task(s.checkpoint_call(body(run_b)))
            cp_a, cp_b = await s.wait_open(run_a), await s.wait_open(run_b)
            assert (await s.decide(cp_a["id"], {"action": "edit", "output": {"text": "edited"}})).status_code == 200
            assert (await s.decide(cp_b["id"], {"action": "abort", "reason": "off topic"})).status_code == 200
            a, b = (await held_a).json(), (await held_b).json()
            assert (a["action"], a["output"]) == ("edit", {"text": "edited"})
            assert (b["action"], b["output"], b["feedback"]) == ("abort", None, "off topic")

    run(scenario())


@pytest.mark.parametrize("on_timeout,extra,expected", [
    ("abort", {}, ("abort", None)),
    ("approve", {}, ("approve", {"text": "first draft"})),
    ("default", {"default_output": {"text": "fallback"}}, ("edit", {"text": "fallback"})),
])
def test_a_timeout_applies_on_timeout_as_a_decision_by_system(sqlite_url, rabbitmq_url, on_timeout, extra, expected):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            run_id = new_run()
            answer = await s.checkpoint_call(body(run_id, timeout_s=0.5, on_timeout=on_timeout, **extra))
            data = answer.json()
            assert answer.status_code == 200
            assert (data["action"], data["output"]) == expected
            assert (data["decided_by"], data["reason"]) == ("system", "timeout")
            ev = await s.wait_event("checkpoint.expired", workflow_run_id=run_id)
            assert ev["checkpoint"]["status"] == "expired"

    run(scenario())


def test_a_wait_longer_than_three_hold_windows_survives_by_503_and_reattach(database_url, rabbitmq_url):
    async def scenario():
        settings = make_settings(database_url, rabbitmq_url, hold_margin_s=0)
        async with Stack(settings) as s:
            run_id = new_run()
            call = body(run_id, read_timeout_s=1)  # a 1 s hold window per call
            for _ in range(3):
                r = await s.checkpoint_call(call)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "decision_pending"
            cp = await s.wait_open(run_id)
            assert cp["attach_count"] == 3
            # Decided while no call is held: the next retry is answered at once.
            assert (await s.decide(cp["id"], {"action": "approve"})).status_code == 200
            r = await s.checkpoint_call(call)
            assert r.status_code == 200 and r.json()["action"] == "approve"
            # Dify sending it yet again (idempotent replay): the same answer, from the store.
            again = await s.checkpoint_call(call)
            assert again.json() == r.json()
            kinds = [h["kind"] for h in (await s.get(f"/v1/checkpoints/{cp['id']}")).json()["history"]]
            assert kinds == ["opened", "reattached", "reattached", "decision"]

    run(scenario())


def test_two_concurrent_decisions_exactly_one_wins_the_other_gets_409(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = new_run()
            held = asyncio.create_task(s.checkpoint_call(body(run_id)))
            cp = await s.wait_open(run_id)
            answers = await asyncio.gather(
                s.decide(cp["id"], {"action": "approve"}, reviewer="alice"),
                s.decide(cp["id"], {"action": "abort"}, reviewer="bob"),
                s.decide(cp["id"], {"action": "revise", "feedback": "again"}, reviewer="carol"))
            codes = sorted(a.status_code for a in answers)
            assert codes == [200, 409, 409]
            winner = next(a.json() for a in answers if a.status_code == 200)["resolution"]
            for loser in (a.json() for a in answers if a.status_code == 409):
                assert loser["error"]["code"] == "already_resolved"
                assert loser["error"]["winning_decision"]["action"] == winner["action"]
            assert (await held).json()["action"] == winner["action"]
            history = (await s.get(f"/v1/checkpoints/{cp['id']}")).json()["history"]
            outcomes = sorted(h["outcome"] for h in history if h["kind"] == "decision")
            assert outcomes == ["applied", "rejected", "rejected"]

    run(scenario())


def test_detached_mode_answers_pending_at_once(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = new_run()
            r = await s.checkpoint_call(body(run_id, mode="detached"))
            assert r.status_code == 200
            data = r.json()
            assert list(data) == ["action", "checkpoint_id"] and data["action"] == "pending"
            cp = await s.wait_open(run_id)
            assert cp["id"] == data["checkpoint_id"] and cp["mode"] == "detached"

    run(scenario())


def test_classic_node_confirmation_approves_or_revises_by_run_and_node(database_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(database_url, rabbitmq_url)) as s:
            run_id = new_run()
            held = asyncio.create_task(s.checkpoint_call(body(run_id), path="/api/user-confirmation"))
            await s.wait_open(run_id)
            r = await s.http.post("/api/node-confirmation", headers={"Authorization": "Bearer rv-bob-token"},
                                  json={"workflow_id": run_id, "node_id": "draft", "satisfied": False,
                                        "feedback": "add a title"})
            assert r.status_code == 200, r.text
            answer = (await held).json()
            assert (answer["action"], answer["feedback"], answer["decided_by"]) == ("revise", "add a title", "bob")

    run(scenario())


def test_an_idempotency_key_repeated_gets_the_same_result_not_409(sqlite_url, rabbitmq_url):
    async def scenario():
        async with Stack(make_settings(sqlite_url, rabbitmq_url)) as s:
            run_id = new_run()
            held = asyncio.create_task(s.checkpoint_call(body(run_id)))
            cp = await s.wait_open(run_id)
            first = await s.decide(cp["id"], {"action": "approve", "idempotency_key": "k-1"})
            second = await s.decide(cp["id"], {"action": "approve", "idempotency_key": "k-1"})
            assert first.status_code == second.status_code == 200
            assert first.json()["resolution"] == second.json()["resolution"]
            await held

    run(scenario())
