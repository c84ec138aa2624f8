"""The poller's recorder on its own: real SQLite store, events and polls in, messages out."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from services.poller.recorder import Recorder
from shared.dify.models import LogEntry, RunRecord
from shared.models import RunEvent, RunTrack
from shared.settings import AppConfig
from shared.store import Database
from shared.store import runs as store
from tests.conftest import make_settings

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures"
RUN = "b39f029a-8a16-4ffa-b350-573e3971a8cc"


@pytest.fixture
def recorder(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    settings = make_settings(sqlite_url, apps=[AppConfig(name="demo", checkpoint_token="cp-test-token-0001",
                                                         dify_base_url="http://dify", dify_api_key="app-x")])
    yield Recorder(db, settings)
    db.dispose()


def stream_events(name: str) -> list[dict]:
    lines = (FIXTURES / name / "stream.sse").read_text().splitlines()
    return [json.loads(line.split("data: ", 1)[1]) for line in lines if "data: " in line]


def feed(recorder: Recorder, events: list[dict]) -> list:
    out = []
    for ev in events:
        out += recorder.on_event(RunEvent(app="demo", workflow_run_id=ev["workflow_run_id"], event=ev))
    return out


def read(recorder: Recorder, run_id: str):
    with recorder.db.read() as conn:
        return (store.get(conn, "demo", run_id), store.nodes_of(conn, "demo", run_id),
                store.history_of(conn, "demo", run_id))


def test_a_recorded_stream_gives_the_run_its_nodes_and_status(recorder):
    events = stream_events("02-http-ok-streaming")
    out = feed(recorder, events)
    run, nodes, _ = read(recorder, events[0]["workflow_run_id"])
    assert run["status"] == "succeeded" and run["streamed"] and run["inputs"]["topic"] == "stream test"
    assert [(n["node_id"], n["status"]) for n in nodes] == [("start", "succeeded"), ("checkpoint", "succeeded"),
                                                            ("end", "succeeded")]
    assert [o.routing_key for o in out][-1] == "run.status.succeeded"


def test_fixture_03_retries_are_counted_and_the_run_ends_partial_succeeded(recorder):
    events = stream_events("03-http-503-retry")
    out = feed(recorder, events)
    run, nodes, _ = read(recorder, events[0]["workflow_run_id"])
    assert run["status"] == "partial-succeeded" and run["exceptions_count"] == 2
    checkpoint = next(n for n in nodes if n["node_type"] == "http-request")
    assert (checkpoint["status"], checkpoint["retries"]) == ("succeeded", 2)
    keys = [o.routing_key for o in out]
    assert keys.count("node.retry") == 2 and keys[-1] == "run.status.partial-succeeded"


def test_a_late_node_started_never_turns_a_finished_node_back_to_running(recorder):
    events = stream_events("02-http-ok-streaming")
    started = next(e for e in events if e["event"] == "node_started" and e["data"]["node_id"] == "checkpoint")
    feed(recorder, events + [started])
    _, nodes, _ = read(recorder, events[0]["workflow_run_id"])
    assert all(n["status"] == "succeeded" for n in nodes)


def test_a_stop_seen_on_the_stream_wins_and_the_poll_flags_the_stale_record(recorder):
    events = stream_events("11-stop")
    out = feed(recorder, events)
    run_id = events[0]["workflow_run_id"]
    assert "run.ended" in [o.routing_key for o in out]  # open checkpoints of the run get cancelled
    run, _, _ = read(recorder, run_id)
    assert run["status"] == "stopped"
    with recorder.db.write() as conn:
        leased = store.claim_due(conn, "me", time.time() + 5, 30, 10)
    record = RunRecord.model_validate({"id": run_id, "status": "running", "inputs": "{}", "outputs": {}})
    recorder.on_poll(leased[0], record, "me")
    run, _, history = read(recorder, run_id)
    assert (run["status"], run["dify_status"], run["stale_record"], run["next_poll_at"]) == \
        ("stopped", "running", True, None)
    assert history[-1]["kind"] == "stale_record"


def test_polls_back_off_while_nothing_changes_and_stop_at_a_terminal_status(recorder):
    recorder.track(RunTrack(app="demo", workflow_run_id=RUN))
    record = RunRecord.model_validate({"id": RUN, "status": "running", "inputs": "{}", "outputs": {}})
    intervals = []
    for _ in range(3):
        with recorder.db.write() as conn:
            [run] = store.claim_due(conn, "me", time.time() + 3600, 30, 1)
        recorder.on_poll(run, record, "me")
        intervals.append(read(recorder, RUN)[0]["poll_interval"])
    assert intervals == [2.0, 4.0, 8.0]
    with recorder.db.write() as conn:
        [run] = store.claim_due(conn, "me", time.time() + 3600, 30, 1)
    out = recorder.on_poll(run, RunRecord.model_validate({"id": RUN, "status": "failed", "inputs": "{}",
                                                          "outputs": {}, "error": "boom"}), "me")
    assert [o.routing_key for o in out] == ["run.status.failed", "run.ended"]
    assert read(recorder, RUN)[0]["next_poll_at"] is None


def test_a_leased_run_is_not_handed_to_a_second_poller(recorder):
    recorder.track(RunTrack(app="demo", workflow_run_id=RUN))
    with recorder.db.write() as conn:
        first = store.claim_due(conn, "a", time.time(), 30, 10)
        second = store.claim_due(conn, "b", time.time(), 30, 10)
    assert [r["id"] for r in first] == [RUN] and second == []


def test_dify_errors_back_off_and_keep_the_run(recorder):
    recorder.track(RunTrack(app="demo", workflow_run_id=RUN))
    with recorder.db.write() as conn:
        [run] = store.claim_due(conn, "me", time.time(), 30, 1)
    recorder.on_poll_error(run, RuntimeError("502"), "me")
    after = read(recorder, RUN)[0]
    assert after["poll_failures"] == 1 and after["next_poll_at"] > time.time() and after["lease_owner"] is None


def test_discovered_log_rows_are_tracked_once_with_their_status(recorder):
    page = json.loads((FIXTURES / "10-logs" / "app01-nofilter-limit5-page1.json").read_text())["response"]["body"]
    entries = [LogEntry.model_validate(e) for e in page["data"]]
    out = [o for e in entries for o in recorder.on_discovered("demo", e)]
    assert len(out) == len(entries) and all(o.routing_key == "run.status.succeeded" for o in out)
    assert all(recorder.on_discovered("demo", e) == [] for e in entries)
    run, _, _ = read(recorder, entries[0].workflow_run.id)
    assert (run["source"], run["user"], run["next_poll_at"]) == ("logs", "fx-log-user-1", None)


def test_newer_difys_submitted_data_is_kept_and_its_reasoning_chunks_are_not(recorder):
    filled = {"event": "human_input_form_filled", "workflow_run_id": RUN, "data": {
        "node_id": "review", "action_id": "approve", "submitted_data": {"choice": "hold", "doc": {"url": "https://x"}}}}
    chunk = {"event": "reasoning_chunk", "workflow_run_id": RUN, "data": {"reasoning": "hm", "node_id": "llm"}}
    out = feed(recorder, [chunk, filled])
    _, _, history = read(recorder, RUN)
    [event] = [h for h in history if h["kind"] == "event"]
    assert event["detail"] == {"event": "human_input_form_filled", "action_id": "approve",
                               "submitted_data": {"choice": "hold", "doc": {"url": "https://x"}}}
    assert "form.report" in [o.routing_key for o in out]


def test_nodes_inside_an_iteration_keep_their_iteration_and_item(recorder):
    started = {"event": "node_finished", "workflow_run_id": RUN, "data": {
        "id": "exec-1", "node_id": "body", "node_type": "human-input", "status": "succeeded", "iteration_id": "it",
        "execution_metadata": {"iteration_index": 2}}}
    feed(recorder, [started])
    _, [node], _ = read(recorder, RUN)
    assert (node["iteration_id"], node["iteration_index"]) == ("it", 2)


def decided_form(recorder: Recorder, run_id: str, delivery: str) -> None:
    from shared.store.tables import checkpoints
    now = time.time()
    with recorder.db.write() as conn:
        conn.execute(checkpoints.insert().values(
            id="cp-form-1", app="demo", workflow_run_id=run_id, node_id="review", round=1, status="resolved",
            kind="dify-form", delivery=delivery, action="approve", timeout_s=300, deadline=now + 300,
            on_timeout="abort", assignees=[], max_rounds=5, created_at=now, updated_at=now))


def polled(recorder: Recorder, status: str) -> list:
    with recorder.db.write() as conn:
        [run] = store.claim_due(conn, "me", time.time() + 3600, 30, 1)
    record = RunRecord.model_validate({"id": RUN, "status": status, "inputs": "{}", "outputs": {}})
    return [o.routing_key for o in recorder.on_poll(run, record, "me")]


def test_a_record_that_only_says_running_after_a_submit_is_no_resume_the_end_of_the_run_is(recorder):
    # Fixture 11: a run stopped while paused reads `running` for ever after the form's submit.
    recorder.track(RunTrack(app="demo", workflow_run_id=RUN))
    assert polled(recorder, "paused") == ["run.status.paused"]
    decided_form(recorder, RUN, "delivered")
    assert polled(recorder, "running") == ["run.status.running"]
    assert polled(recorder, "succeeded") == ["form.report", "run.status.succeeded"]


def test_the_end_of_a_run_with_no_form_waiting_sends_no_form_report(recorder):
    recorder.track(RunTrack(app="demo", workflow_run_id=RUN))  # tracked as running
    decided_form(recorder, RUN, "resumed")
    assert polled(recorder, "succeeded") == ["run.status.succeeded"]
