"""Decision policies in the state machine: quorum, reject-wins, self-approval, time policies,
delegation, snapshots — on a real SQLite store, messages returned (no broker)."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from services.decider import commands
from services.decider.logic import Decider
from services.decider.timers import Timers
from shared.access import ALL
from shared.models import CheckpointCommand, CheckpointRequested, DecisionSubmitted
from shared.policy import Approval, EscalationStep, Policy
from shared.settings import AppConfig, ReviewerConfig
from shared.store import Database
from shared.store import checkpoints as store
from shared.store import timers as timer_store
from tests.conftest import APP_TOKEN, make_settings

NAMES = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture
def db(sqlite_url):
    database = Database(sqlite_url)
    database.migrate()
    yield database
    database.dispose()


def settings_for(url, **app_policy):
    reviewers = [ReviewerConfig(name=n, token=f"rv-{n}-token-0001", apps=["demo"],
                                groups=["legal"] if n in ("carol", "dave") else [],
                                end_users=["dify-user-bob"] if n == "bob" else [],
                                delegate_to="erin" if n == "dave" else None) for n in NAMES]
    policy = Policy.model_validate(app_policy) if app_policy else None
    return make_settings(url, reviewers=reviewers, apps=[AppConfig(name="demo", checkpoint_token=APP_TOKEN,
                                                                   policy=policy)])


@pytest.fixture
def decider(db, sqlite_url):
    return Decider(db, settings_for(sqlite_url))


def open_cp(decider, assignees=("alice", "bob", "carol"), user="someone", **policy):
    req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft", node_output="text",
                              timeout_s=600, max_rounds=3, round=1, assignees=list(assignees), user=user,
                              policy=Policy.model_validate(policy) if policy else None)
    return decider.on_request(req, "held-q", "held-c").checkpoint


def vote(decider, cp, actor, action="approve", **extra):
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action=action, actor=actor, channel="api", **extra)
    return decider.on_decision(dec, ALL, "rq", "rc")


def held_answers(outcome):
    return [json.loads(o.body) for o in outcome.outbound if o.routing_key == "held-q"]


def test_a_two_of_three_quorum_resolves_only_at_the_second_approve(decider):
    cp = open_cp(decider, approval=Approval(mode="m_of_n", m=2))
    first = vote(decider, cp, "alice")
    assert first.kind == "voted" and first.checkpoint["status"] == "open" and held_answers(first) == []
    assert first.checkpoint["tally"]["progress"] == "1 of 2 approved: alice"
    assert [o.routing_key for o in first.outbound].count("checkpoint.voted") == 1
    second = vote(decider, cp, "bob")
    assert second.kind == "applied" and second.checkpoint["status"] == "resolved"
    [answer] = held_answers(second)
    assert answer["resolution"]["action"] == "approve" and "alice, bob" in answer["resolution"]["feedback"]


def test_one_abort_resolves_a_quorum_at_once_when_rejects_win(decider):
    cp = open_cp(decider, approval=Approval(mode="all"))
    vote(decider, cp, "alice")
    out = vote(decider, cp, "carol", "abort", reason="no")
    assert out.kind == "applied" and out.checkpoint["action"] == "abort"


def test_without_reject_wins_a_reject_resolves_only_when_the_quorum_is_out_of_reach(decider):
    cp = open_cp(decider, approval=Approval(mode="majority", reject_wins=False))  # 2 of 3
    assert vote(decider, cp, "alice", "abort", reason="no").kind == "voted"
    out = vote(decider, cp, "bob", "abort", reason="no either")
    assert out.kind == "applied" and out.checkpoint["action"] == "abort"


def test_each_reviewer_votes_once_and_a_repeat_of_the_same_message_is_recognised(decider):
    cp = open_cp(decider, approval=Approval(mode="all"))
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="alice", channel="api")
    assert decider.on_decision(dec, ALL).kind == "voted"
    assert decider.on_decision(dec, ALL).kind == "voted"  # a redelivery: counted once
    again = vote(decider, cp, "alice")
    assert (again.kind, again.code) == ("rejected", "already_voted")
    with decider.db.read() as conn:
        assert store.get(conn, cp["id"])["tally"]["approved"] == ["alice"]


def test_an_edit_under_a_quorum_is_refused_and_a_group_member_votes_for_the_group(decider):
    cp = open_cp(decider, assignees=("alice", "group:legal"), approval=Approval(mode="all"))
    assert cp["policy"]["electorate"] == ["alice", "carol", "dave", "erin"]  # dave delegates to erin
    out = vote(decider, cp, "alice", "edit", output="x", has_output=True)
    assert (out.kind, out.code) == ("rejected", "quorum_edit")
    assert vote(decider, cp, "carol").kind == "voted"


def test_the_reviewer_who_started_the_run_may_not_approve_it(decider):
    cp = open_cp(decider, user="dify-user-bob", no_self_approval=True)
    out = vote(decider, cp, "bob")
    assert (out.kind, out.code) == ("rejected", "self_approval")
    assert vote(decider, cp, "bob", "abort", reason="mine, stop").kind == "applied"  # rejecting is allowed


def test_a_reviewer_away_brings_their_delegate(decider):
    cp = open_cp(decider, assignees=("dave",))
    assert cp["assignees"] == ["dave", "erin"] and cp["policy"]["delegated"] == {"dave": "erin"}
    assert vote(decider, cp, "erin").kind == "applied"


def test_the_policy_is_snapshotted_and_a_later_settings_change_does_not_touch_an_open_checkpoint(db, sqlite_url):
    first = Decider(db, settings_for(sqlite_url, approval={"mode": "m_of_n", "m": 2}))
    cp = open_cp(first)
    assert cp["policy"]["required"] == 2
    later = Decider(db, settings_for(sqlite_url))  # the app's policy was removed meanwhile
    assert vote(later, cp, "alice").kind == "voted"
    assert vote(later, cp, "bob").kind == "applied"


def test_the_body_overrides_the_apps_policy_field_by_field(db, sqlite_url):
    decider = Decider(db, settings_for(sqlite_url, approval={"mode": "all"}, remind_every_s=600))
    cp = open_cp(decider, approval=Approval(mode="any"))
    assert cp["policy"]["required"] == 1 and cp["policy"]["remind_every_s"] == 600


# ---------------------------------------------------------------------- time policies
def due_now(timers: Timers, cp):
    """Make this checkpoint's timers due (their rows hold absolute times)."""
    with timers.db.write() as conn:
        for t in timer_store.of(conn, cp["id"]):
            conn.execute(timer_store.timers.update().where(timer_store.t.id == t["id"]).values(due_at=time.time() - 1))


def fire_all(timers: Timers):
    events, resolved = [], []
    for t in timers.due_timers():
        out, cp = timers.fire(t["id"])
        events += out
        if cp:
            resolved.append(cp)
    return events, resolved


def test_reminders_repeat_and_the_deadline_warning_fires_once(decider):
    timers = Timers(decider.db, decider.settings)
    cp = open_cp(decider, remind_every_s=60, warn_before_s=120)
    with decider.db.read() as conn:
        assert sorted((t["kind"], t["step"]) for t in timer_store.of(conn, cp["id"])) == [
            ("deadline_near", 1), ("reminder", 1)]
    due_now(timers, cp)
    events, _ = fire_all(timers)
    assert sorted(e.routing_key for e in events) == ["checkpoint.deadline_near", "checkpoint.reminder"]
    assert fire_all(timers) == ([], [])  # fired once
    with decider.db.read() as conn:
        assert ("reminder", 2) in {(t["kind"], t["step"]) for t in timer_store.of(conn, cp["id"])}


def test_an_escalation_adds_assignees_then_applies_the_default_as_policy(decider):
    timers = Timers(decider.db, decider.settings)
    cp = open_cp(decider, assignees=("alice",), escalate=[EscalationStep(after_s=60, add_assignees=["group:legal"]),
                                                         EscalationStep(after_s=120, apply="approve")])
    due_now(timers, cp)
    events, resolved = fire_all(timers)
    assert [e.routing_key for e in events] == ["checkpoint.escalated", "checkpoint.escalated"]
    [done] = resolved
    assert (done["status"], done["action"], done["decided_by"], done["reason"]) == (
        "resolved", "approve", "policy", "escalation")
    assert set(done["assignees"]) == {"alice", "group:legal", "erin"}  # dave (legal) is away: erin


def test_timers_of_a_closed_checkpoint_are_skipped(decider):
    timers = Timers(decider.db, decider.settings)
    cp = open_cp(decider, remind_every_s=60)
    vote(decider, cp, "alice")
    due_now(timers, cp)
    assert fire_all(timers) == ([], [])
    with decider.db.read() as conn:
        assert [t["outcome"] for t in timer_store.of(conn, cp["id"])] == ["skipped"]


# ---------------------------------------------------------------------- claim, release, reassign
def run_command(decider, cp, actor, name, **fields):
    cmd = CheckpointCommand(checkpoint_id=cp["id"], command=name, actor=actor, **fields)
    with decider.db.write() as conn:
        return commands.apply(conn, decider.settings, cmd, ALL, time.time(), "ev")


def test_a_claim_is_seen_by_others_and_released_by_its_owner(decider):
    cp = open_cp(decider)
    changed, refusal, events = run_command(decider, cp, "alice", "claim")
    assert refusal is None and changed["claimed_by"] == "alice" and events[0].routing_key == "checkpoint.claimed"
    _, refusal, _ = run_command(decider, cp, "bob", "claim")
    assert refusal[0] == "not_claimable" and "claimed by alice" in refusal[1]
    _, refusal, _ = run_command(decider, cp, "bob", "release")
    assert refusal[0] == "not_claimable"
    changed, refusal, _ = run_command(decider, cp, "alice", "release")
    assert refusal is None and changed["claimed_by"] is None
    assert vote(decider, cp, "bob").kind == "applied"  # a claim is a soft lock: others may still decide


def test_an_assignee_hands_their_seat_to_another_reviewer(decider):
    cp = open_cp(decider, assignees=("alice",))
    changed, refusal, _ = run_command(decider, cp, "alice", "reassign", to="bob", note="on holiday")
    assert refusal is None and changed["assignees"] == ["bob"]
    assert (vote(decider, cp, "alice").code, vote(decider, cp, "bob").kind) == ("not_assignee", "applied")
    with decider.db.read() as conn:
        kinds = [h["kind"] for h in store.history_of(conn, cp["id"])]
    assert kinds == ["opened", "reassigned", "decision", "decision"]


def test_someone_outside_the_assignees_cannot_reassign(decider):
    cp = open_cp(decider, assignees=("alice",))
    _, refusal, _ = run_command(decider, cp, "bob", "reassign", to="bob")
    assert refusal[0] == "not_assignee"


def test_a_reviewer_hands_on_only_their_own_seat_and_only_to_someone_granted_the_app(decider):
    cp = open_cp(decider, assignees=("alice", "bob"))
    _, refusal, _ = run_command(decider, cp, "alice", "reassign", to="carol", replace="bob")
    assert refusal[0] == "not_assignee" and "own seat" in refusal[1]
    _, refusal, _ = run_command(decider, cp, "alice", "reassign", to="nobody")
    assert refusal[0] == "not_claimable" and "granted app demo" in refusal[1]
