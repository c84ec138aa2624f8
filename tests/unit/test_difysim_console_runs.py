"""Runs started from Dify's console by an account (POST /_sim/apps/{app}/debug-run): logs, re-attach, stop."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.difysim.apps import DEFAULT_ACCOUNT
from tests.difysim.testing import echo_graph, in_process, register, review_graph

RUN = {"inputs": {"topic": "Console"}}


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def scenario(steps, graph: dict | None = None):
    async def main():
        async with in_process() as client:
            auth = await register(client, graph or echo_graph())
            return await steps(client, auth)

    return asyncio.run(main())


def test_an_explore_run_of_an_account_is_listed_with_the_account_and_no_end_user():
    async def steps(client, auth):
        answer = (await client.post("/_sim/apps/app/debug-run", json=RUN)).json()
        logs = (await client.get("/v1/workflows/logs", headers=auth)).json()
        return answer, logs

    answer, logs = scenario(steps)
    assert (answer["data"]["status"], answer["data"]["outputs"]) == ("succeeded", {"topic": "Console"})
    row = logs["data"][0]
    assert (row["created_by_role"], row["created_from"], row["created_by_end_user"]) == \
        ("account", "installed-app", None)
    assert row["created_by_account"] == {"id": DEFAULT_ACCOUNT.id, "name": "admin", "email": "admin@difysim.local"}
    assert (row["workflow_run"]["id"], row["workflow_run"]["triggered_from"]) == (answer["workflow_run_id"], "app-run")


def test_the_account_filter_finds_account_runs_and_the_session_filter_does_not():
    async def steps(client, auth):
        await client.post("/_sim/apps/app/debug-run", json={**RUN, "account": {"name": "Rita", "email": "rita@x.io"}})
        await client.post("/v1/workflows/run", json={**RUN, "user": "rita@x.io"}, headers=auth)
        by_account = (await client.get("/v1/workflows/logs?created_by_account=rita@x.io", headers=auth)).json()
        by_session = (await client.get("/v1/workflows/logs?created_by_end_user_session_id=rita@x.io",
                                       headers=auth)).json()
        return by_account, by_session

    by_account, by_session = scenario(steps)
    assert [r["created_by_role"] for r in by_account["data"]] == ["account"]
    assert by_account["data"][0]["created_by_account"]["name"] == "Rita"
    assert [r["created_by_role"] for r in by_session["data"]] == ["end_user"]


@pytest.mark.parametrize("query", ["", "&include_state_snapshot=true", "&continue_on_pause=true"])
def test_re_attaching_to_an_account_run_with_any_end_user_is_404(query):
    async def steps(client, auth):
        answer = (await client.post("/_sim/apps/app/debug-run", json=RUN)).json()
        run_id = answer["workflow_run_id"]
        return [await client.get(f"/v1/workflow/{run_id}/events?user={user}{query}", headers=auth)
                for user in ("admin", DEFAULT_ACCOUNT.id, "admin@difysim.local")]

    for answer in scenario(steps, review_graph()):
        assert (answer.status_code, answer.json()["message"]) == (404, "Workflow run not found")


def test_a_paused_account_run_is_listed_paused_and_its_form_can_still_be_submitted():
    async def steps(client, auth):
        answer = (await client.post("/_sim/apps/app/debug-run", json=RUN)).json()
        listed = (await client.get("/v1/workflows/logs", headers=auth)).json()["data"][0]["workflow_run"]["status"]
        token = answer["data"]["reasons"][0]["form_token"]
        submit = await client.post(f"/v1/form/human_input/{token}", headers=auth,
                                   json={"inputs": {"edited": "ok"}, "action": "approve", "user": "someone"})
        run = client.sim.store.runs[answer["workflow_run_id"]]
        await asyncio.gather(run.task, return_exceptions=True)
        finished = next(e["data"] for e in run.events if e["event"] == "workflow_finished")
        return listed, submit.status_code, finished

    listed, status, finished = scenario(steps, review_graph())
    assert (listed, status, finished["status"]) == ("paused", 200, "succeeded")
    assert finished["created_by"] == DEFAULT_ACCOUNT.as_json()


def test_a_canvas_debugger_run_is_not_listed_in_the_logs_but_can_be_read():
    async def steps(client, auth):
        stream = await client.post("/_sim/apps/app/debug-run", json={**RUN, "response_mode": "streaming",
                                                                     "created_from": "debugging"})
        events = data_events(stream.text)
        run_id = events[0]["workflow_run_id"]
        logs = (await client.get("/v1/workflows/logs", headers=auth)).json()
        record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
        return events, logs, record

    events, logs, record = scenario(steps)
    assert events[-1]["data"]["status"] == "succeeded"
    assert (logs["total"], logs["data"]) == (0, [])
    assert record["status"] == "succeeded"
    assert json.loads(record["inputs"])["sys.user_id"] == DEFAULT_ACCOUNT.id


def test_debug_run_refuses_unknown_apps_origins_and_bad_inputs():
    async def steps(client, auth):
        return [await client.post("/_sim/apps/nope/debug-run", json=RUN),
                await client.post("/_sim/apps/app/debug-run", json={**RUN, "created_from": "service-api"}),
                await client.post("/_sim/apps/app/debug-run", json={"inputs": {}})]

    unknown, origin, inputs = scenario(steps)
    assert unknown.status_code == 404
    assert origin.status_code == 400 and "created_from" in origin.json()["error"]
    assert (inputs.status_code, inputs.json()["error"]) == (400, "topic is required in input form")
