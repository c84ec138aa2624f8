"""How a paused Human Input run goes on or ends in the simulator: timeouts, stop, re-attach, fault switches."""
from __future__ import annotations

import asyncio

from tests.difysim.config import SimConfig
from tests.difysim.testing import review_graph, until
from tests.unit.test_difysim_human_input import data_events, finished, names, paused_run, scenario, submit

FAST_SSE = SimConfig(ping_interval_s=0.05, sse_idle_close_s=0.3)


async def record(client, auth, run_id: str) -> dict:
    return (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()


async def reattach(client, auth, run_id: str, query: str = "") -> asyncio.Task:
    """Open a re-attach in the background; returns once it listens to the run."""
    run = client.sim.store.runs[run_id]
    before = len(run.subscribers)
    task = asyncio.create_task(client.get(f"/v1/workflow/{run_id}/events?user=u{query}", headers=auth))
    await until(lambda: len(run.subscribers) != before or task.done())
    return task


# ---------------------------------------------------------------- timeouts
def test_expire_hook_resumes_a_timed_out_form_down_the_timeout_branch():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        hook = (await client.post("/_sim/human_input/expire")).json()
        await finished(client, run_id)
        form = await client.get(f"/v1/form/human_input/{token}", headers=auth)
        return run_id, hook, await record(client, auth, run_id), client.sim.store.runs[run_id].events, form

    run_id, hook, done, events, form = scenario(steps, graph=review_graph(timeout=0, timeout_branch=True))
    assert hook == {"timed_out": [run_id], "stopped": []}
    assert (done["status"], done["total_steps"]) == ("succeeded", 4)
    assert done["outputs"] == {"edited": None, "action_id": "", "action_value": "", "rendered_content": None}
    after_pause = names(events)[names(events).index("workflow_paused") + 1:]
    assert after_pause == ["workflow_started", "node_started", "human_input_form_timeout", "node_finished",
                           "node_started", "node_finished", "workflow_finished"]
    review = [e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == "review"][-1]
    assert review["outputs"] == {"__action_id": "", "__action_value": ""}
    assert {e["data"]["node_id"] for e in events if e["event"] == "node_started"} == {"start", "review", "end_timeout"}
    assert (form.status_code, form.json()["code"]) == (412, "human_input_form_expired")


def test_the_periodic_check_times_out_forms_at_its_configured_interval():
    async def steps(client, auth):
        run_id, _, _ = await paused_run(client, auth)
        await asyncio.wait_for(finished(client, run_id), timeout=5)
        return (await record(client, auth, run_id))["outputs"]["action_id"]

    config = SimConfig(human_input_check_interval_s=0.05)
    assert scenario(steps, config, review_graph(timeout=0, timeout_branch=True)) == ""


def test_a_form_within_its_timeout_is_left_alone_by_the_check():
    async def steps(client, auth):
        run_id, _, _ = await paused_run(client, auth)
        hook = (await client.post("/_sim/human_input/expire")).json()
        return hook, (await record(client, auth, run_id))["status"]

    assert scenario(steps) == ({"timed_out": [], "stopped": []}, "paused")


def test_the_global_cap_stops_a_paused_run_without_a_word_on_the_stream():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        listener = await reattach(client, auth, run_id, "&continue_on_pause=true")
        await asyncio.sleep(0.05)
        hook = (await client.post("/_sim/human_input/expire")).json()
        await finished(client, run_id)
        form = await client.get(f"/v1/form/human_input/{token}", headers=auth)
        return run_id, hook, await record(client, auth, run_id), (await listener).text, form

    config = SimConfig(human_input_global_timeout_s=0.01, ping_interval_s=0.05, sse_idle_close_s=0.3)
    run_id, hook, done, stream, form = scenario(steps, config)
    assert hook == {"timed_out": [], "stopped": [run_id]}
    assert (done["status"], done["outputs"]) == ("stopped", {})
    assert done["error"] == "Human input global timeout at node review"
    assert done["finished_at"] is not None
    assert data_events(stream) == []  # Dify only writes the record
    assert form.json()["code"] == "human_input_form_expired"


# ---------------------------------------------------------------- stop
def test_stop_of_a_paused_run_does_nothing_until_the_submit_which_leaves_it_running_forever():
    async def steps(client, auth):
        run_id, token, answer = await paused_run(client, auth)
        stop = await client.post(f"/v1/workflows/tasks/{answer['task_id']}/stop", json={"user": "u"}, headers=auth)
        after_stop = await record(client, auth, run_id)
        form = await client.get(f"/v1/form/human_input/{token}", headers=auth)
        posted = await client.post(f"/v1/form/human_input/{token}", json=submit("abort"), headers=auth)
        await finished(client, run_id)
        return stop.json(), after_stop, form.status_code, posted, await record(client, auth, run_id), \
            names(client.sim.store.runs[run_id].events)

    stop, after_stop, form, posted, after_submit, events = scenario(steps)
    assert stop == {"result": "success"}
    assert (after_stop["status"], form) == ("paused", 200)
    assert (posted.status_code, posted.json()) == (200, {})
    assert (after_submit["status"], after_submit["total_steps"], after_submit["outputs"], after_submit["finished_at"]) \
        == ("running", 0, {}, None)
    assert events[-1] == "workflow_paused"  # the resumed run died on the stop flag without a word


# ---------------------------------------------------------------- fault switches
def test_resume_lost_fault_accepts_the_submit_but_the_run_stays_paused():
    async def steps(client, auth):
        await client.post("/_sim/faults", json={"resume_lost": True})
        run_id, token, _ = await paused_run(client, auth)
        posted = await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        await asyncio.sleep(0.05)
        again = await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        expire = (await client.post("/_sim/human_input/expire")).json()
        return posted, again.status_code, expire, await record(client, auth, run_id)

    posted, again, expire, paused = scenario(steps, SimConfig(human_input_global_timeout_s=0.01))
    assert (posted.status_code, posted.json(), again) == (200, {}, 412)
    assert expire == {"timed_out": [], "stopped": []}  # the form counts as submitted: not even the cap ends it
    assert paused["status"] == "paused"


def test_resume_ends_stopped_fault_ends_the_run_stopped_on_stream_and_record():
    async def steps(client, auth):
        faults = (await client.post("/_sim/faults", json={"resume_ends_stopped": True})).json()
        run_id, token, _ = await paused_run(client, auth)
        listener = await reattach(client, auth, run_id, "&continue_on_pause=true&include_state_snapshot=true")
        posted = await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        await finished(client, run_id)
        return faults, posted, data_events((await listener).text)[-1], await record(client, auth, run_id)

    faults, posted, last, stopped = scenario(steps)
    assert faults["resume_ends_stopped"] is True and faults["resume_lost"] is False
    assert (posted.status_code, posted.json()) == (200, {})
    assert (last["event"], last["data"]["status"]) == ("workflow_finished", "stopped")
    assert (stopped["status"], stopped["outputs"]) == ("stopped", {})


# ---------------------------------------------------------------- re-attach
def test_reattach_with_snapshot_and_continue_on_pause_replays_the_pause_then_follows_the_resumption():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        listener = await reattach(client, auth, run_id, "&continue_on_pause=true&include_state_snapshot=true")
        await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        return data_events((await listener).text)

    events = scenario(steps)
    # Fixture 08 events-reattach-continue_on_pause.sse, text chunks left out.
    assert names(events) == ["workflow_started", "node_started", "node_finished", "node_started", "node_finished",
                             "human_input_required", "workflow_paused", "workflow_started", "node_started",
                             "human_input_form_filled", "node_finished", "node_started", "node_finished",
                             "workflow_finished"]
    snapshot_review = events[4]["data"]
    assert (snapshot_review["status"], snapshot_review["index"], snapshot_review["outputs"]) == ("paused", 2, None)
    assert list(events[0]) == ["event", "task_id", "workflow_run_id", "data"]  # rebuilt, not replayed
    assert "{{#start.topic#}}" in events[5]["data"]["form_content"]  # the snapshot shows the raw content
    assert [e["data"].get("reason") for e in events if e["event"] == "workflow_started"] == ["initial", "resumption"]
    assert events[-1]["data"]["status"] == "succeeded"


def test_reattach_without_flags_to_a_paused_run_sends_only_pings_until_the_idle_close():
    async def steps(client, auth):
        run_id, _, _ = await paused_run(client, auth)
        return (await client.get(f"/v1/workflow/{run_id}/events?user=u", headers=auth)).text

    text = scenario(steps, FAST_SSE)
    assert data_events(text) == [] and text.count("event: ping") >= 2


def test_reattach_with_continue_on_pause_alone_stays_open_after_the_finish():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        listener = await reattach(client, auth, run_id, "&continue_on_pause=true")
        await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        return (await listener).text

    text = scenario(steps, FAST_SSE)
    assert names(data_events(text))[0] == "workflow_started"  # no replay: the resumption is the first event
    assert names(data_events(text))[-1] == "workflow_finished"
    assert "event: ping" in text.split('"event":"workflow_finished"')[1]  # kept pinging until the idle close (13)


def test_reattach_after_the_finish_sends_one_synthesized_workflow_finished():
    async def steps(client, auth):
        run_id, token, answer = await paused_run(client, auth)
        await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        await finished(client, run_id)
        text = (await client.get(f"/v1/workflow/{run_id}/events?user=u&continue_on_pause=true", headers=auth)).text
        return run_id, answer["data"]["created_at"], data_events(text)

    run_id, created_at, events = scenario(steps)
    (event,) = events
    assert (event["event"], event["task_id"], event["data"]["status"]) == ("workflow_finished", run_id, "succeeded")
    assert event["data"]["created_at"] == created_at  # the record's, not the resumption's


def test_the_maximum_execution_time_spares_a_paused_run_and_restarts_with_its_resumption():
    async def steps(client, auth):
        run_id, token, _ = await paused_run(client, auth)
        await asyncio.sleep(0.5)  # longer than the maximum execution time, but paused
        paused = (await record(client, auth, run_id))["status"]
        await client.post(f"/v1/form/human_input/{token}", json=submit(), headers=auth)
        await finished(client, run_id)
        return paused, (await record(client, auth, run_id))["status"]

    assert scenario(steps, SimConfig(max_execution_time_s=0.3)) == ("paused", "succeeded")
