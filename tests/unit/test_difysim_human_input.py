"""The simulator's Human Input node and form API, as recorded on Dify 1.14.1 (fixtures 08, 09, 11, 13)."""
from __future__ import annotations

import asyncio
import json

from tests.difysim.config import SimConfig
from tests.difysim.testing import in_process, register, review_graph

RUN = {"inputs": {"topic": "Press release"}, "user": "u"}
STREAM = {**RUN, "response_mode": "streaming"}
# Key sets (and order) of fixture 08's response.json.
PAUSED_DATA_KEYS = ["id", "workflow_id", "status", "outputs", "error", "elapsed_time", "total_tokens", "total_steps",
                    "created_at", "finished_at", "paused_nodes", "reasons"]
REASON_KEYS = ["TYPE", "form_id", "form_content", "inputs", "actions", "node_id", "node_title",
               "resolved_default_values", "form_token", "expiration_time"]
CONTENT = "## Review the draft\n\nTopic: **Press release**\n\nEdit the text below if needed:\n\n"


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "text_chunk"]


async def paused_run(client, auth) -> tuple[str, str, dict]:
    """Start a blocking run of review_graph; returns (run id, form token, the blocking answer)."""
    answer = (await client.post("/v1/workflows/run", json=RUN, headers=auth)).json()
    return answer["workflow_run_id"], answer["data"]["reasons"][0]["form_token"], answer


async def finished(client, run_id: str) -> None:
    task = client.sim.store.runs[run_id].task
    await asyncio.gather(task, return_exceptions=True)


def submit(action: str = "approve", edited: str = "Edited text", user: str | None = "u") -> dict:
    body = {"inputs": {"edited": edited}, "action": action}
    return {**body, "user": user} if user else body


def scenario(coroutine_function, config: SimConfig | None = None, graph: dict | None = None):
    async def main():
        async with in_process(config) as client:
            auth = await register(client, graph or review_graph())
            return await coroutine_function(client, auth)

    return asyncio.run(main())


# ---------------------------------------------------------------- pausing
def test_blocking_run_pauses_with_exactly_the_answer_shape_of_fixture_08():
    async def steps(client, auth):
        run_id, _, answer = await paused_run(client, auth)
        record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
        logs = (await client.get("/v1/workflows/logs", headers=auth)).json()
        return answer, record, logs

    answer, record, logs = scenario(steps)
    data = answer["data"]
    assert list(data) == PAUSED_DATA_KEYS
    assert (data["status"], data["outputs"], data["total_steps"], data["finished_at"]) == ("paused", {}, 2, None)
    assert data["paused_nodes"] == ["review"]
    reason = data["reasons"][0]
    assert list(reason) == REASON_KEYS
    assert reason["form_content"] == CONTENT + "{{#$output.edited#}}"  # variables filled, input marker kept
    assert reason["resolved_default_values"] == {"edited": "Press release"}
    assert [a["id"] for a in reason["actions"]] == ["approve", "revise", "abort"]
    assert len(reason["form_token"]) == 22
    assert reason["expiration_time"] - data["created_at"] in (3600, 3601)
    assert (record["status"], record["outputs"], record["total_steps"], record["elapsed_time"]) == \
        ("paused", {}, 2, 0.0)
    assert [row["workflow_run"]["status"] for row in logs["data"]] == ["paused"]


def test_streaming_run_ends_with_human_input_required_then_workflow_paused():
    async def steps(client, auth):
        return data_events((await client.post("/v1/workflows/run", json=STREAM, headers=auth)).text)

    events = scenario(steps)
    assert names(events) == ["workflow_started", "node_started", "node_finished", "node_started",
                             "human_input_required", "workflow_paused"]  # no node_finished for the paused node
    required, paused = events[-2]["data"], events[-1]["data"]
    assert required["display_in_ui"] is True and required["form_content"] == CONTENT + "{{#$output.edited#}}"
    assert list(paused) == ["workflow_run_id", "paused_nodes", "outputs", "reasons", "status", "created_at",
                            "elapsed_time", "total_tokens", "total_steps"]
    assert (paused["status"], paused["total_steps"], list(paused["reasons"][0])) == ("paused", 2, REASON_KEYS)


# ---------------------------------------------------------------- deciding
def test_get_form_answers_the_rendered_form():
    async def steps(client, auth):
        _, token, _ = await paused_run(client, auth)
        return (await client.get(f"/v1/form/human_input/{token}", headers=auth)).json()

    form = scenario(steps)
    assert list(form) == ["form_content", "inputs", "resolved_default_values", "user_actions", "expiration_time"]
    assert form["resolved_default_values"] == {"edited": "Press release"}


def test_submit_resumes_the_same_run_down_the_chosen_action_with_the_node_outputs():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        await asyncio.sleep(0.3)  # the time spent paused is not the node's elapsed_time
        answer = await client.post(f"/v1/form/human_input/{token}", json=submit("revise"), headers=auth)
        await finished(client, run_id)
        record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
        return answer, record, client.sim.store.runs[run_id].events

    answer, record, events = scenario(steps)
    assert (answer.status_code, answer.json()) == (200, {})
    rendered = CONTENT + "Edited text"
    assert (record["status"], record["total_steps"]) == ("succeeded", 4)
    assert record["outputs"] == {"edited": "Edited text", "action_id": "revise", "action_value": "Request revision",
                                 "rendered_content": rendered}
    after_pause = names(events)[names(events).index("workflow_paused") + 1:]
    assert after_pause == ["workflow_started", "node_started", "human_input_form_filled", "node_finished",
                           "node_started", "node_finished", "workflow_finished"]
    resumed = [e for e in events if e["event"] == "workflow_started"][-1]
    assert resumed["data"]["reason"] == "resumption" and resumed["workflow_run_id"] == record["id"]
    filled = next(e["data"] for e in events if e["event"] == "human_input_form_filled")
    assert (filled["action_id"], filled["action_text"], filled["rendered_content"]) == \
        ("revise", "Request revision", rendered)
    review_ids = {e["data"]["id"] for e in events if e["event"] == "node_started" and e["data"]["node_id"] == "review"}
    assert len(review_ids) == 1  # the resumed node announces itself again with the same execution id
    review = [e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == "review"][0]
    assert review["elapsed_time"] < 0.25
    assert review["outputs"] == {"edited": "Edited text", "__action_id": "revise",
                                 "__action_value": "Request revision", "__rendered_content": rendered}
    ran = {e["data"]["node_id"] for e in events if e["event"] == "node_started"}
    assert ran == {"start", "review", "end_revise"}


def test_a_submitted_form_answers_412_to_a_second_submit_and_to_get():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        again = await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        read = await client.get(f"/v1/form/human_input/{token}", headers=auth)
        return again, read

    for answer in scenario(steps):
        assert (answer.status_code, answer.json()["code"]) == (412, "human_input_form_submitted")
        assert answer.json()["message"].startswith("This form has already been submitted by another user, form_id=")


def test_of_two_simultaneous_submits_one_wins_and_the_run_finishes_once():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        answers = await asyncio.gather(
            client.post(f"/v1/form/human_input/{token}", json=submit("approve"), headers=auth),
            client.post(f"/v1/form/human_input/{token}", json=submit("revise"), headers=auth))
        await finished(client, run_id)
        return [a.status_code for a in answers], names(client.sim.store.runs[run_id].events)

    statuses, events = scenario(steps)
    assert sorted(statuses) == [200, 412]
    assert events.count("workflow_finished") == 1 and events.count("human_input_form_filled") == 1


def test_bad_submissions_answer_400_with_dify_messages():
    async def steps(client, auth):
        _, token, _ = await paused_run(client, auth)
        url = f"/v1/form/human_input/{token}"
        bad_action = await client.post(url, json=submit("publish_now"), headers=auth)
        missing = await client.post(url, json={"inputs": {}, "action": "revise", "user": "u"}, headers=auth)
        no_user = await client.post(url, json=submit(user=None), headers=auth)
        still_open = await client.get(url, headers=auth)
        return bad_action.json(), missing.json(), no_user.json(), still_open.status_code

    bad_action, missing, no_user, still_open = scenario(steps)
    assert bad_action == {"code": "invalid_form_data", "message": "Invalid action: publish_now", "status": 400}
    assert missing == {"code": "invalid_form_data", "message": "Missing required inputs: edited", "status": 400}
    assert no_user == {"code": "invalid_param", "message": "Arg user must be provided.", "status": 400}
    assert still_open == 200


def test_form_endpoints_answer_404_for_a_bogus_token_another_apps_key_or_no_webapp_delivery():
    async def steps(client, auth):
        _, token, _ = await paused_run(client, auth)
        other = await register(client, review_graph(), name="other")
        email_only = await register(client, review_graph(webapp=False), name="email-only")
        _, hidden_token, _ = await paused_run(client, email_only)
        return [await client.post("/v1/form/human_input/bogus-token-123", json=submit(), headers=auth),
                await client.get(f"/v1/form/human_input/{token}", headers=other),
                await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=other),
                await client.get(f"/v1/form/human_input/{hidden_token}", headers=email_only)]

    answers = scenario(steps)
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "not_found")] * 4
    assert answers[0].json()["message"] == (
        "Form not found. You have requested this URI [/v1/form/human_input/bogus-token-123] but did you mean "
        "/v1/form/human_input/<string:form_token> or /api/form/human_input/<string:form_token> ?")


def test_a_form_past_its_expiry_answers_412_expired_even_before_the_timeout_check():
    async def steps(client, auth):
        run_id, token, answer = await paused_run(client, auth)
        url = f"/v1/form/human_input/{token}"
        return (answer["data"]["reasons"][0]["expiration_time"] - answer["data"]["created_at"],
                await client.get(url, headers=auth), await client.post(url, json=submit(), headers=auth),
                (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()["status"])

    lifetime, read, posted, status = scenario(steps, graph=review_graph(timeout=0, timeout_branch=True))
    assert lifetime == 0
    for answer in (read, posted):
        assert (answer.status_code, answer.json()["code"]) == (412, "human_input_form_expired")
        assert answer.json()["message"].startswith("This form has expired, form_id=")
    assert status == "paused"
