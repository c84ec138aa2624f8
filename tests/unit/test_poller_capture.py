"""Capture from anywhere: a run paused at a Human Input node that was started directly in Dify (the
simulator in-process), never through us, is discovered by the listing; the poller re-attaches with the
run's own user and the state snapshot, and the replayed form opens a `dify-form` checkpoint as for a
gateway run. A console account's run says why it cannot be captured. Lost streams are claimed once."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from shared.models import CheckpointRequested, FormDelivery, RunEvent, StreamsAlive
from shared.runstarter import EventTee
from shared.store import run_tracking
from shared.store import runs as store
from shared.topology import CHECKPOINT_REQUESTED, RUN_STREAMS_ALIVE
from tests.unit.test_difysim_parallel_forms import parallel_graph
from tests.unit.test_poller_sweep import rig

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "09-human-input-streaming" / "graph.json"
GRAPH = json.loads(FIXTURE.read_text())


def requested(r) -> list[CheckpointRequested]:
    """The forms asked for, one per token (human_input_required and workflow_paused both carry it; the
    decider opens one checkpoint per token)."""
    found = {}
    for _, key, body, _ in r.service.broker.published:
        if key == CHECKPOINT_REQUESTED:
            req = CheckpointRequested.model_validate_json(body)
            found.setdefault(req.form_token, req)
    return list(found.values())


def history(r, run_id: str) -> list[dict]:
    with r.db.read() as conn:
        return store.history_of(conn, "demo", run_id)


async def start_elsewhere(r, user: str = "someone-else", topic: str = "Newsletter") -> dict:
    answer = await r.http.post("/v1/workflows/run", headers={"Authorization": f"Bearer {_key(r)}"},
                               json={"inputs": {"topic": topic}, "response_mode": "blocking", "user": user})
    return answer.json()


def _key(r) -> str:
    return r.service.settings.app("demo").dify_api_key


async def capture_all(r) -> None:
    await r.sweep()
    await r.service.reattacher.sweep_captures()
    await asyncio.gather(*list(r.service.reattacher.tasks))
    await r.service.broker.drain()


async def test_a_run_paused_elsewhere_is_discovered_and_its_form_captured_with_the_runs_own_user(sqlite_url):
    async with rig(sqlite_url, GRAPH) as r:
        answer = await start_elsewhere(r)
        run_id, token = answer["workflow_run_id"], answer["data"]["reasons"][0]["form_token"]
        await r.requests()
        await capture_all(r)
        [req] = requested(r)
        assert (req.kind, req.workflow_run_id, req.node_id, req.user) == ("dify-form", run_id, "review", "someone-else")
        assert req.form_token == token and [a["id"] for a in req.form["actions"]] == ["approve", "revise", "abort"]
        assert "Newsletter" in req.form["form_content"] and "{{#start.topic#}}" not in req.form["form_content"]
        calls = await r.requests()
        assert calls.count(f"/v1/workflow/{run_id}/events") == 1 and f"/v1/form/human_input/{token}" in calls
        run = r.runs()[run_id]
        assert (run["status"], run["capture"], run["user"], run["streamed"]) == ("paused", "captured", "someone-else",
                                                                                  True)
        assert "capture_captured" in [h["kind"] for h in history(r, run_id)]
        # captured: no second re-attach, however often the poller looks
        await capture_all(r)
        assert f"/v1/workflow/{run_id}/events" not in await r.requests()


async def test_each_paused_node_of_a_run_becomes_a_checkpoint(sqlite_url):
    async with rig(sqlite_url, parallel_graph()) as r:
        await start_elsewhere(r, user="u")
        await capture_all(r)
        assert sorted(req.node_id for req in requested(r)) == ["review_a", "review_b"]
        assert len({req.form_token for req in requested(r)}) == 2


async def test_a_run_of_a_console_account_says_why_its_form_cannot_be_captured(sqlite_url):
    async with rig(sqlite_url, GRAPH) as r:
        answer = (await r.http.post("/_sim/apps/app/debug-run", json={
            "inputs": {"topic": "x"}, "account": {"name": "Rita", "email": "rita@example.com"}})).json()
        run_id = answer["workflow_run_id"]
        await r.requests()
        await capture_all(r)
        run = r.runs()[run_id]
        assert (run["status"], run["capture"]) == ("paused", "unavailable")
        assert run["started_by"] == "account:rita@example.com"
        assert "rita@example.com" in run["capture_detail"] and "decide it in Dify" in run["capture_detail"]
        assert [h["detail"]["reason"] for h in history(r, run_id) if h["kind"] == "capture_unavailable"] == \
            [run["capture_detail"]]
        assert requested(r) == [] and not any("/events" in c for c in await r.requests())


async def test_a_re_attach_dify_refuses_is_recorded_and_tried_again_an_interval_later(sqlite_url):
    async with rig(sqlite_url, GRAPH, capture_retry_s=3600) as r:
        answer = await start_elsewhere(r)
        run_id = answer["workflow_run_id"]
        await r.sweep()
        with r.db.write() as conn:  # as if the logs had named another user
            store.update_run(conn, "demo", run_id, user="intruder")
        await r.service.reattacher.sweep_captures()
        await asyncio.gather(*list(r.service.reattacher.tasks))
        run = r.runs()[run_id]
        assert run["capture"] == "failed" and "404" in run["capture_detail"] and "'intruder'" in run["capture_detail"]
        assert run["capture_due_at"] > time.time() + 3000  # once per interval
        assert await r.service.reattacher.sweep_captures() == 0


async def test_a_form_reported_by_the_workflow_itself_never_opens_a_checkpoint(sqlite_url):
    async with rig(sqlite_url, GRAPH) as r:
        event = {"event": "human_input_required", "workflow_run_id": "3f1e0d6c-0000-4000-8000-000000000009",
                 "data": {"form_token": "forged", "node_id": "review"}}
        r.service.recorder.on_event(RunEvent(app="demo", workflow_run_id=event["workflow_run_id"], source="workflow",
                                             event=event))
        assert requested(r) == []


async def test_a_quiet_stream_is_claimed_once_and_a_heartbeat_keeps_it_from_being_claimed(sqlite_url):
    async with rig(sqlite_url, stream_lost_after_s=30, stream_heartbeat_s=10) as r:
        now = time.time()
        with r.db.write() as conn:
            for run_id, alive in (("quiet", now - 60), ("beating", now - 60), ("fresh", now)):
                store.ensure(conn, "demo", run_id, "gateway", next_poll_at=None)
                store.update_run(conn, "demo", run_id, streamed=True, stream_alive_at=alive)
        r.service.recorder.streams_alive(StreamsAlive(streams=[("demo", "beating")]))
        claimed = r.service.recorder.lost_streams(["demo"], 10)
        assert [run["id"] for run in claimed] == ["quiet"]
        assert r.service.recorder.lost_streams(["demo"], 10) == []  # claimed: not again for 30 s
        with r.db.write() as conn:  # later on, the others are quiet too; `quiet` had its one re-attach
            later = run_tracking.claim_lost_streams(conn, now + 31, 30, 1, ["demo"], 10)
        assert sorted(run["id"] for run in later) == ["beating", "fresh"]


async def test_a_tee_lists_its_open_streams_in_heartbeats_until_they_end(sqlite_url):
    async with rig(sqlite_url, stream_heartbeat_s=0.05, stream_lost_after_s=1) as r:
        tee = EventTee(r.service.broker, r.service.settings, "demo", "gateway", "u")
        await tee.event("run-1", {"event": "workflow_started", "workflow_run_id": "run-1", "data": {}})
        await asyncio.sleep(0.2)
        await tee.event("run-1", {"event": "workflow_finished", "workflow_run_id": "run-1", "data": {}})
        beats = [StreamsAlive.model_validate_json(b).streams for _, k, b, _ in r.service.broker.published
                 if k == RUN_STREAMS_ALIVE]
        assert beats and all(streams == [("demo", "run-1")] for streams in beats)
        count = len(beats)
        await asyncio.sleep(0.2)
        assert len([k for _, k, _, _ in r.service.broker.published if k == RUN_STREAMS_ALIVE]) == count


async def test_a_captured_form_is_submitted_with_the_runs_own_user_whoever_decided(sqlite_url):
    async with rig(sqlite_url, GRAPH) as r:
        answer = await start_elsewhere(r, user="someone-else")
        run_id, token = answer["workflow_run_id"], answer["data"]["reasons"][0]["form_token"]
        await capture_all(r)
        sent: list[dict] = []

        async def record(request):
            if request.method == "POST" and "/form/human_input/" in request.url.path:
                sent.append(json.loads(request.content))

        r.service.clients["demo"].requester.http.event_hooks["request"].append(record)
        await r.service.deliver_form(FormDelivery(checkpoint_id="cp-1", app="demo", workflow_run_id=run_id,
                                                  form_token=token, action="approve",
                                                  inputs={"edited": "fine"}, user="alice"))
        assert [b["user"] for b in sent] == ["someone-else"]
        assert r.http.sim.store.runs[run_id].status != "paused"
