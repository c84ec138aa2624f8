"""How ingest reads Dify's checkpoint bodies and sizes its hold window."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingest.checkpoints import hold_window
from services.ingest.runs_api import RerunBody, StartBody, TrackBody, WorkflowEvent
from services.ingest.schemas import CheckpointCall, DecisionBody
from shared.models import DecisionSubmitted
from shared.settings import Settings


def test_numbers_rendered_as_strings_and_comma_separated_assignees_are_accepted():
    call = CheckpointCall.model_validate({"workflow_run_id": "r", "node_id": "n", "round": "2", "timeout_s": "30",
                                          "assignees": "alice, bob", "max_rounds": ""})
    assert (call.round, call.timeout_s, call.assignees, call.max_rounds) == (2, 30.0, ["alice", "bob"], None)


def test_any_json_value_is_a_node_output_and_an_object_message_becomes_text():
    call = CheckpointCall.model_validate({"workflow_run_id": "r", "node_id": "n", "node_output": [1, {"a": None}],
                                          "message": {"k": "v"}})
    assert call.node_output == [1, {"a": None}] and call.message == '{"k": "v"}'


@pytest.mark.parametrize("bad", [{"node_id": "n"}, {"workflow_run_id": "r"}, {"workflow_run_id": "a b", "node_id": "n"},
                                 {"workflow_run_id": "r", "node_id": "n", "mode": "later"},
                                 {"workflow_run_id": "r", "node_id": "n", "round": 0}])
def test_broken_bodies_are_refused(bad):
    with pytest.raises(ValidationError):
        CheckpointCall.model_validate(bad)


@pytest.mark.parametrize("read_timeout,expected", [(None, 55.0), (600, 590.0), (60, 55.0), (3, 1.0), (10_000, 590.0)])
def test_the_hold_window_stays_under_the_nodes_read_timeout_and_the_cap(read_timeout, expected):
    call = CheckpointCall(workflow_run_id="r", node_id="n", read_timeout_s=read_timeout)
    assert hold_window(call, Settings(hold_margin_s=5, hold_max_s=590, hold_default_s=55)) == expected


def test_a_bot_message_with_an_output_key_counts_as_giving_an_output_even_null():
    assert DecisionSubmitted.model_validate({"action": "edit", "actor": "b", "output": None}).has_output
    assert not DecisionSubmitted.model_validate({"action": "edit", "actor": "b"}).has_output


def test_a_decision_body_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        DecisionBody.model_validate({"action": "approve", "satisfied": True})


@pytest.mark.parametrize("model,body", [
    # a workflow's event: the poller copies its data's strings into text columns (title, error, status)
    (WorkflowEvent, {"workflow_run_id": "r", "event": "node_started", "data": {"title": "a\x00b"}}),
    (WorkflowEvent, {"workflow_run_id": "r", "event": "workflow_finished", "data": {"error": ["x", {"k": "\x00"}]}}),
    (WorkflowEvent, {"workflow_run_id": "r", "event": "milestone", "data": {"a\x00": 1}}),
    (WorkflowEvent, {"workflow_run_id": "r", "event": "milestone", "node_id": "n\x00"}),
    # runs: the user and the app are stored with the run (after Dify has started it)
    (StartBody, {"app": "demo", "user": "u\x00"}),
    (StartBody, {"app": "de\x00mo"}),
    (TrackBody, {"app": "demo", "run_id": "r\x00"}),
    (RerunBody, {"user": "u\x00"}),
])
def test_text_that_a_store_cannot_hold_is_refused_in_event_and_run_bodies(model, body):
    """PostgreSQL refuses NUL in text columns: accepted here, such a body was dead-lettered by the
    poller (an event lost) or failed after Dify had started the run (issue 13)."""
    with pytest.raises(ValidationError):
        model.model_validate(body)
    assert WorkflowEvent.model_validate({"workflow_run_id": "r", "event": "e", "data": {"t": "ok", "n": [1]}})
