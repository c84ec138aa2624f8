"""The checkpoint state machine on its own: a real SQLite store, no broker (messages are returned)."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from services.decider.logic import Decider
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.store import Database
from shared.store import checkpoints as store
from tests.conftest import make_settings


@pytest.fixture
def decider(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    yield Decider(db, make_settings(sqlite_url))
    db.dispose()


def request(run_id="run-1", **extra) -> CheckpointRequested:
    values = dict(app="demo", workflow_run_id=run_id, node_id="draft", node_output="v1", timeout_s=300, max_rounds=3)
    values.update(extra)
    return CheckpointRequested(**values)


def decision(cp_id, action="approve", actor="alice", **extra) -> DecisionSubmitted:
    return DecisionSubmitted(checkpoint_id=cp_id, action=action, actor=actor, **extra)


def replies(outcome):
    return [json.loads(o.body) for o in outcome.outbound if o.exchange == ""]


def test_a_first_request_opens_round_one_and_announces_it(decider):
    out = decider.on_request(request(), "q", "c1")
    assert out.kind == "opened" and out.checkpoint["round"] == 1
    assert [o.routing_key for o in out.outbound] == ["checkpoint.opened"]


def test_the_same_call_again_reattaches_and_points_replies_at_the_new_call(decider):
    first = decider.on_request(request(), "q1", "c1").checkpoint
    again = decider.on_request(request(), "q2", "c2")
    assert again.kind == "reattached" and again.checkpoint["id"] == first["id"]
    applied = decider.on_decision(decision(first["id"]))
    assert [(r["outcome"], o.routing_key, o.correlation_id) for r, o in
            zip(replies(applied), [o for o in applied.outbound if o.exchange == ""])] == [("resolved", "q2", "c2")]


def test_after_a_revise_a_new_output_is_the_next_round_and_the_old_output_is_a_replay(decider):
    cp = decider.on_request(request(), "q", "c1").checkpoint
    decider.on_decision(decision(cp["id"], "revise", feedback="more"))
    replay = decider.on_request(request(), "q", "c2")
    assert replay.kind == "replayed" and replies(replay)[0]["resolution"]["action"] == "revise"
    nxt = decider.on_request(request(node_output="v2"), "q", "c3")
    assert nxt.kind == "opened" and nxt.checkpoint["round"] == 2


def test_an_explicit_round_is_the_key(decider):
    a = decider.on_request(request(round=1), "q", "c").checkpoint
    b = decider.on_request(request(round=2), "q", "c").checkpoint
    assert a["id"] != b["id"] and (a["round"], b["round"]) == (1, 2)


def test_with_an_explicit_round_the_same_call_reattaches_then_replays_and_history_has_one_opening(decider):
    # The round-given path inserts first (ON CONFLICT DO NOTHING): a conflict must still find the row.
    first = decider.on_request(request(round=1), "q1", "c1")
    again = decider.on_request(request(round=1), "q2", "c2")
    assert (first.kind, again.kind) == ("opened", "reattached") and again.checkpoint["id"] == first.checkpoint["id"]
    assert again.checkpoint["attach_count"] == 1 and again.outbound == []
    decider.on_decision(decision(first.checkpoint["id"], "edit", output="v1-edited", has_output=True))
    replay = decider.on_request(request(round=1), "q3", "c3")
    assert replay.kind == "replayed" and replies(replay)[0]["resolution"]["output"] == "v1-edited"
    with decider.db.read() as conn:
        kinds = [h["kind"] for h in store.history_of(conn, first.checkpoint["id"])]
        row = store.get(conn, first.checkpoint["id"])
    assert kinds == ["opened", "reattached", "decision"]
    assert (row["reply_to"], row["correlation_id"], row["attach_count"]) == ("q2", "c2", 2)


def test_decisions_after_the_first_are_refused_with_the_winner(decider):
    cp = decider.on_request(request(), "q", "c").checkpoint
    assert decider.on_decision(decision(cp["id"])).kind == "applied"
    late = decider.on_decision(decision(cp["id"], "abort", actor="bob"), "rq", "rc")
    assert (late.kind, late.code) == ("rejected", "already_resolved")
    assert replies(late)[0]["winning"]["decided_by"] == "alice"


def test_a_redelivered_decision_is_recognised_and_re_emits_the_resolution(decider):
    cp = decider.on_request(request(), "q", "c").checkpoint
    dec = decision(cp["id"])
    decider.on_decision(dec)
    again = decider.on_decision(dec, "rq", "rc")
    assert again.kind == "duplicate"
    assert {o.routing_key for o in again.outbound} == {"q", "checkpoint.resolved", "rq"}


@pytest.mark.parametrize("dec,code", [
    (dict(action="revise"), "feedback_required"),
    (dict(action="edit"), "output_required"),
    (dict(action="approve", actor="zed"), "not_assignee"),
])
def test_refusals_name_their_reason(decider, dec, code):
    cp = decider.on_request(request(assignees=["alice", "group:editors"]), "q", "c").checkpoint
    out = decider.on_decision(decision(cp["id"], **{"actor": "alice", **dec}))
    assert (out.kind, out.code) == ("rejected", code)


def test_revise_is_refused_on_the_last_round(decider):
    cp = decider.on_request(request(round=3), "q", "c").checkpoint
    out = decider.on_decision(decision(cp["id"], "revise", feedback="again"))
    assert out.code == "max_rounds_reached"


def test_a_group_assignee_admits_its_members(decider):
    cp = decider.on_request(request(assignees=["group:editors"]), "q", "c").checkpoint
    assert decider.on_decision(decision(cp["id"], actor="carol")).kind == "applied"


def test_expiry_applies_on_timeout_once_and_is_unpublished_until_confirmed(decider):
    cp = decider.on_request(request(timeout_s=0.01, on_timeout="default", default_output={"x": 1}), "q", "c").checkpoint
    time.sleep(0.02)
    assert decider.due_ids() == [cp["id"]]
    out = decider.expire(cp["id"])
    assert (out.checkpoint["status"], out.checkpoint["action"], out.checkpoint["output"]) == ("expired", "edit", {"x": 1})
    assert decider.expire(cp["id"]) is None
    decider.settings.republish_after_s = 0
    assert [c["id"] for c in decider.unpublished()] == [cp["id"]]
    decider.mark_published(cp["id"])
    assert decider.unpublished() == []


def test_a_decision_by_run_and_node_finds_the_latest_round(decider):
    run_id = str(uuid.uuid4())
    cp = decider.on_request(request(run_id), "q", "c").checkpoint
    out = decider.on_decision(DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="approve", actor="bot"))
    assert out.kind == "applied" and out.checkpoint["id"] == cp["id"]
