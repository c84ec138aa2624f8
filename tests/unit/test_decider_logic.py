"""The checkpoint state machine on its own: a real SQLite store, no broker (messages are returned).
`ALL` is the scope of an admin; scoped decisions have their own tests below."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from services.decider.logic import Decider
from services.decider.timers import Timers
from shared.access import ALL
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.store import Database
from shared.store import checkpoints as store
from tests.conftest import make_settings


class Scoped(Decider):
    """The decider with an admin's scope unless a test names one."""

    def on_decision(self, dec, scope=ALL, reply_to=None, correlation_id=None):  # type: ignore[override]
        return super().on_decision(dec, scope, reply_to, correlation_id)


@pytest.fixture
def decider(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    yield Scoped(db, make_settings(sqlite_url))
    db.dispose()


@pytest.fixture
def timers(decider):
    return Timers(decider.db, decider.settings)


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
            zip(replies(applied), [o for o in applied.outbound if o.exchange == ""], strict=True)] == \
        [("resolved", "q2", "c2")]


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
    late = decider.on_decision(decision(cp["id"], "abort", actor="bob"), ALL, "rq", "rc")
    assert (late.kind, late.code) == ("rejected", "already_resolved")
    assert replies(late)[0]["winning"]["decided_by"] == "alice"


def test_a_redelivered_decision_is_recognised_and_re_emits_the_resolution(decider):
    cp = decider.on_request(request(), "q", "c").checkpoint
    dec = decision(cp["id"])
    decider.on_decision(dec)
    again = decider.on_decision(dec, ALL, "rq", "rc")
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


def test_expiry_applies_on_timeout_once_and_is_unpublished_until_confirmed(decider, timers):
    cp = decider.on_request(request(timeout_s=0.01, on_timeout="default", default_output={"x": 1}), "q", "c").checkpoint
    time.sleep(0.02)
    assert timers.due_ids() == [cp["id"]]
    out = timers.expire(cp["id"])
    assert (out["status"], out["action"], out["output"]) == ("expired", "edit", {"x": 1})
    assert timers.expire(cp["id"]) is None
    decider.settings.republish_after_s = 0
    assert [c["id"] for c in timers.unpublished()] == [cp["id"]]
    timers.mark_published(cp["id"])
    assert timers.unpublished() == []


def test_a_decision_by_run_and_node_finds_the_latest_round(decider):
    run_id = str(uuid.uuid4())
    cp = decider.on_request(request(run_id), "q", "c").checkpoint
    out = decider.on_decision(DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="approve", actor="bot"))
    assert out.kind == "applied" and out.checkpoint["id"] == cp["id"]


# ---------------------------------------------------------------------- apps are tenants
def test_another_apps_call_for_the_same_run_and_node_is_its_own_checkpoint(decider):
    run_id = str(uuid.uuid4())
    a = decider.on_request(request(run_id, app="demo", round=1), "qa", "ca").checkpoint
    b = decider.on_request(request(run_id, app="other", round=1, node_output="B's text"), "qb", "cb")
    assert b.kind == "opened" and b.checkpoint["id"] != a["id"]
    decider.on_decision(decision(b.checkpoint["id"], "approve"))
    with decider.db.read() as conn:
        assert store.get(conn, a["id"])["status"] == "open"  # A's checkpoint is untouched


def test_a_decision_only_finds_checkpoints_of_the_actors_apps(decider):
    cp = decider.on_request(request(app="demo"), "q", "c").checkpoint
    out = decider.on_decision(decision(cp["id"]), frozenset({"other"}))
    assert (out.kind, out.code) == ("rejected", "not_found")
    out = decider.on_decision(DecisionSubmitted(workflow_run_id="run-1", node_id="draft", action="approve",
                                                actor="alice"), frozenset({"other"}))
    assert out.kind == "parked"  # nothing of app "other" here yet: kept for when it opens, never demo's


def test_the_same_run_and_node_open_in_two_apps_needs_the_checkpoint_id(decider):
    decider.on_request(request(app="demo"), "q", "c")
    decider.on_request(request(app="other"), "q", "c")
    out = decider.on_decision(DecisionSubmitted(workflow_run_id="run-1", node_id="draft", action="approve",
                                                actor="alice"))
    assert (out.kind, out.code) == ("rejected", "ambiguous")


# ---------------------------------------------------------------------- decisions before their checkpoint
def test_a_decision_before_its_checkpoint_is_parked_and_applied_when_it_opens(decider):
    run_id = str(uuid.uuid4())
    dec = DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="revise", feedback="shorter",
                            actor="alice")
    parked = decider.on_decision(dec, ALL, "rq", "rc")
    assert parked.kind == "parked" and replies(parked)[0]["outcome"] == "parked"
    assert decider.on_decision(dec).kind == "parked"  # a redelivery keeps one parked decision
    opened = decider.on_request(request(run_id), "held-q", "held-c")
    assert opened.checkpoint["status"] == "resolved" and opened.checkpoint["action"] == "revise"
    [answer] = replies(opened)
    assert answer["outcome"] == "resolved" and answer["resolution"]["feedback"] == "shorter"
    assert {o.routing_key for o in opened.outbound} >= {"checkpoint.opened", "checkpoint.resolved", "held-q"}
    with decider.db.read() as conn:
        kinds = [h["kind"] for h in store.history_of(conn, opened.checkpoint["id"])]
        row = store.decision_by_message(conn, dec.id)
    assert kinds == ["opened", "decision"] and row["outcome"] == "applied"


def test_of_two_parked_decisions_the_first_wins_and_the_second_is_refused(decider):
    run_id = str(uuid.uuid4())
    first = DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="approve", actor="alice")
    second = DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="abort", actor="bob")
    decider.on_decision(first)
    decider.on_decision(second)
    opened = decider.on_request(request(run_id), "q", "c")
    assert (opened.checkpoint["action"], opened.checkpoint["decided_by"]) == ("approve", "alice")
    from shared.store import parked
    with decider.db.read() as conn:
        assert (parked.get(conn, first.id)["status"], parked.get(conn, second.id)["status"]) == ("applied", "refused")
        assert parked.get(conn, second.id)["code"] == "already_resolved"


def test_a_parked_decision_whose_checkpoint_never_opens_expires(decider, timers):
    decider.settings.parked_decision_ttl_s = 0.01
    dec = DecisionSubmitted(workflow_run_id=str(uuid.uuid4()), node_id="draft", action="approve", actor="alice")
    decider.on_decision(dec)
    time.sleep(0.02)
    [event] = timers.expire_parked()
    assert event.routing_key == "decision.expired" and json.loads(event.body)["decision"]["id"] == dec.id
    assert timers.expire_parked() == []
    from shared.store import parked
    with decider.db.read() as conn:
        assert parked.get(conn, dec.id)["status"] == "expired"


def test_a_parked_decision_refused_at_open_is_recorded_with_its_reason(decider):
    run_id = str(uuid.uuid4())
    dec = DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="approve", actor="zed")
    decider.on_decision(dec)
    opened = decider.on_request(request(run_id, assignees=["alice"]), "q", "c")
    assert opened.checkpoint["status"] == "open"
    with decider.db.read() as conn:
        assert store.decision_by_message(conn, dec.id)["code"] == "not_assignee"


def test_a_sweep_with_nothing_to_do_leaves_a_failing_stores_health_down(decider, timers):
    """On a full disk a write transaction that changes nothing still commits: the sweep must not open
    one, or readiness says ready while every real write fails (issue 13, SQLite disk full)."""
    decider.db.health.failed(OSError("database or disk is full"))
    assert timers.expire_parked() == [] and timers.flag_stuck_resumes() == []
    assert decider.db.health.up is False and decider.db.ready() is False
