"""Decision policies on the checkpoint page and in the inbox: quorum progress and who voted, a vote that
counted (and the second one refused before a click), an edit under a quorum offered as "revise with
the change", the self-approval guard, a claim shown to others, and the policy snapshot (electorate,
delegation, reminders, deadline warning, escalation ladder). Checkpoints carry a policy snapshot,
votes, timers and claims as the decider writes them (shared/policy.py::snapshot, shared/store/votes.py);
the helpers are in console_support, with the delegation and bulk tests'."""
from __future__ import annotations

import time

import pytest

from services.console.gates import gate
from shared.models import Reply
from shared.policy import Policy
from shared.store import checkpoints as store
from tests.conftest import make_settings
from tests.unit.console_support import (
    APPS,
    REVIEWERS,
    add,
    client_for,
    csrf_of,
    ladder,
    policy_console,
    quorum,
    section,
    timer,
    vote,
)


@pytest.fixture
def console(sqlite_url):
    yield from policy_console(sqlite_url)


# ---------------------------------------------------------------------- quorum
def test_quorum_progress_and_who_rejected_show_on_the_checkpoint_page_and_in_the_inbox(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob", "carol"], policy=quorum(2))
    vote(db, cid, "bob")
    vote(db, cid, "carol", "revise", feedback="shorter, please")
    alice = client_for(app, "alice")
    page = alice.get(f"/checkpoints/{cid}").text
    head = section(page, "cp-head")
    assert "1 of 2 approved: bob; revise by carol" in head and '<progress max="2" value="1"' in head
    policy = section(page, "policy")
    assert "<strong>2 of 3</strong> must approve" in policy and "one revise or abort decides at once" in policy
    assert 'data-voter="bob"' in policy and "bob</strong> approved" in policy
    assert "carol</strong> asked for a revision" in policy and "shorter, please" in policy
    assert "alice</strong> has not voted" in policy
    inbox = alice.get("/").text
    assert "1 of 2 approved: bob; revise by carol" in section(inbox, "inbox-list")


def test_a_reviewer_who_voted_sees_their_vote_counted_and_cannot_vote_again(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob", "carol"], policy=quorum(2))
    vote(db, cid, "alice")
    page = client_for(app, "alice").get(f"/checkpoints/{cid}").text
    decision = section(page, "decision")
    assert 'data-code="already_voted"' in decision
    assert "Your approve vote counted (1 of 2 approved: alice)" in decision
    assert decision.count('disabled title="Your approve vote counted') == 4  # approve, revise, edit, abort
    assert "you voted approve" in client_for(app, "alice").get("/").text
    bob_page = client_for(app, "bob").get(f"/checkpoints/{cid}").text  # bob has not voted: his buttons work
    assert "disabled" not in section(bob_page, "decision").split('data-action="approve"')[1].split("</details>")[0]


def test_the_voted_answer_is_said_plainly_and_a_plain_form_post_lands_back_with_it(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob"], policy=quorum(2, mode="all"))
    replies = app.state.replies
    replies.answer = Reply(outcome="voted", checkpoint_id=cid, progress={"required": 2, "progress": "1 of 2 approved: "
                                                                          "alice", "approved": ["alice"]})
    alice = client_for(app, "alice")
    csrf = csrf_of(alice, f"/checkpoints/{cid}")
    answer = alice.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200
    assert answer.json()["status"] == "voted" and answer.json()["progress"]["progress"] == "1 of 2 approved: alice"
    plain = alice.post(f"/checkpoints/{cid}/decision", data={"action": "approve", "csrf": csrf},
                       follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"].endswith("?outcome=voted")
    assert "Your vote counted; the checkpoint stays open" in alice.get(plain.headers["location"]).text
    replies.answer = Reply(outcome="rejected", checkpoint_id=cid, error_code="already_voted", error_message="voted")
    again = alice.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"


def test_an_edit_under_a_quorum_is_offered_as_revise_with_the_change(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob"], policy=quorum(2), node_output="The old text.")
    alice = client_for(app, "alice")
    page = alice.get(f"/checkpoints/{cid}").text
    decision = section(page, "decision")
    assert "Edit → revise with the change" in decision and 'name="proposed_output"' in decision
    assert 'value="edit"' not in decision  # nothing on the page sends an edit the decider would refuse
    csrf = csrf_of(alice, f"/checkpoints/{cid}")
    alice.post(f"/checkpoints/{cid}/decision", headers={"X-CSRF-Token": csrf},
               json={"action": "revise", "proposed_output": "The new text.", "feedback": "say it plainly"})
    sent = app.state.replies.decisions[-1]
    assert sent.action == "revise" and sent.feedback == "say it plainly\n\nUse this output instead:\nThe new text."
    alice.post(f"/checkpoints/{cid}/decision", headers={"X-CSRF-Token": csrf},
               json={"action": "revise", "proposed_output": "The new text.", "feedback": ""})
    assert app.state.replies.decisions[-1].feedback == "Use this output instead:\nThe new text."
    # unchanged output and no feedback: nothing to revise with; the decider's feedback_required answers it
    alice.post(f"/checkpoints/{cid}/decision", headers={"X-CSRF-Token": csrf},
               json={"action": "revise", "proposed_output": "The old text.", "feedback": ""})
    assert app.state.replies.decisions[-1].feedback == ""
    last = add(db, assignees=["alice", "bob"], policy=quorum(2), round_=5, max_rounds=5)
    final = section(alice.get(f"/checkpoints/{last}").text, "decision")  # revise is refused too: nothing offered
    assert "revise with the change" not in final and 'disabled title="This checkpoint needs 2 approvals' in final


def test_the_self_approval_guard_disables_approve_and_edit_but_not_revise_or_abort(console):
    app, db = console
    cid = add(db, policy=Policy(no_self_approval=True), user="e2e-user")
    page = client_for(app, "bob").get(f"/checkpoints/{cid}").text
    decision = section(page, "decision")
    assert 'data-code="self_approval"' in decision
    assert decision.count('disabled title="You started this run (as the Dify user e2e-user)') == 2  # approve, edit
    assert "self_approval" not in decision.split('data-action="revise"')[1].split("</details>")[0]
    assert "guarded: the one who started the run" in section(page, "policy")
    assert "self_approval" not in section(client_for(app, "alice").get(f"/checkpoints/{cid}").text, "decision")


def test_the_gate_follows_the_deciders_order_of_refusals():
    settings = make_settings("sqlite://", reviewers=REVIEWERS, apps=APPS)
    from services.console.auth import Session

    bob = Session(settings.reviewer("bob"), "c", 0, "t")
    cp = {"status": "open", "app": "demo", "assignees": [], "kind": "http", "round": 1, "max_rounds": 1,
          "user": "e2e-user", "policy": {"required": 2, "no_self_approval": True}, "tally": None}
    g = gate(settings, bob, cp)
    assert g.allowed and g.quorum == 2
    assert g.code_of("approve") == "self_approval" and g.code_of("edit") == "self_approval"  # before quorum_edit
    assert g.code_of("revise") == "max_rounds_reached" and g.code_of("abort") == ""
    voted = gate(settings, bob, {**cp, "tally": {"approved": [], "rejected": [{"voter": "bob", "action": "abort"}],
                                                 "progress": "0 of 2 approved; abort by bob"}})
    assert not voted.allowed and voted.code == "already_voted" and voted.vote["action"] == "abort"
    single = gate(settings, bob, {**cp, "policy": {"required": 1}, "tally": {"approved": ["bob"]}})
    assert single.allowed  # one decision decides: no votes to count


# ---------------------------------------------------------------------- claims
def test_a_claim_is_shown_to_others_with_its_time_as_a_notice_that_refuses_nothing(console):
    app, db = console
    at = time.time() - 120
    cid = add(db, claimed_by="bob", claimed_at=at)
    alice_page = client_for(app, "alice").get(f"/checkpoints/{cid}").text
    head = section(alice_page, "cp-head")
    assert "Claimed by <strong>bob</strong> since" in head and f'data-clock="{at}"' in head
    assert time.strftime("%H:%M UTC", time.gmtime(at)) in head  # UTC without the script; local time with it
    assert 'data-command="claim"' not in head and 'data-command="release"' not in head  # only bob or an admin
    notice = section(alice_page, "claim-notice")
    assert "bob has claimed this checkpoint" in notice and "You may still decide" in notice
    assert "disabled" not in section(alice_page, "decision").split('data-action="approve"')[1].split("</details>")[0]
    bob_head = section(client_for(app, "bob").get(f"/checkpoints/{cid}").text, "cp-head")
    assert "Claimed by <strong>you</strong>" in bob_head and 'data-command="release"' in bob_head
    assert 'data-command="release"' in section(client_for(app, "ops").get(f"/checkpoints/{cid}").text, "cp-head")
    assert "claimed by bob" in section(client_for(app, "alice").get("/").text, "inbox-list")


# ---------------------------------------------------------------------- the policy snapshot
def test_the_policy_card_shows_the_snapshot_electorate_delegation_and_every_timer(console):
    app, db = console
    opened = time.time() - 700
    cid = add(db, assignees=["group:legal", "erin"], electorate=["carol", "dave", "erin"], delegated={"dave": "erin"},
              created_at=opened, policy=quorum(2, remind_every_s=300, warn_before_s=120, escalate=ladder(
                  {"after_s": 600, "add_assignees": ["group:leads"]}, {"after_s": 1200, "apply": "default"})))
    timer(db, cid, "reminder", 1, opened + 300, fired="fired")
    timer(db, cid, "reminder", 2, opened + 600, fired="fired")
    timer(db, cid, "reminder", 3, opened + 900)
    timer(db, cid, "deadline_near", 1, opened + 480, fired="fired")
    timer(db, cid, "escalate", 1, opened + 600, fired="fired")
    timer(db, cid, "escalate", 2, opened + 1200)
    policy = section(client_for(app, "carol").get(f"/checkpoints/{cid}").text, "policy")
    assert "that is: carol, dave, erin" in policy
    assert 'data-delegated="dave">dave is away: <strong>erin</strong> decides too' in policy
    reminders = policy.split('data-policy="reminders">')[1].split("</dd>")[0]
    assert "every 5m 00s" in reminders and "2 sent" in reminders and f'data-clock="{opened + 900}"' in reminders
    warning = policy.split('data-policy="warning">')[1].split("</dd>")[0]
    assert "2m 00s before the deadline" in warning and "sent" in warning
    steps = policy.split('<ol class="ladder">')[1].split("</ol>")[0]
    assert "after <strong>10m 00s</strong>" in steps and "adds group:leads to the assignees" in steps
    assert "decides by its default (on_timeout: abort), as policy" in steps
    assert steps.count("done</span>") == 1  # the first step fired, the second is to come
    assert "not guarded" in policy


def test_a_checkpoint_without_a_policy_snapshot_says_one_decision_decides(console):
    app, db = console
    cid = add(db)
    with db.write() as conn:
        store.update_open(conn, cid, time.time(), policy=None)
    page = client_for(app, "alice").get(f"/checkpoints/{cid}").text
    assert "one decision decides" in section(page, "policy") and "<progress" not in section(page, "cp-head")
    plain = section(client_for(app, "alice").get(f"/checkpoints/{add(db)}").text, "policy")
    assert "no self-approval guard, no reminders, no deadline warning, no escalation" in plain
    assert 'data-policy="reminders"' not in plain


def test_history_rows_of_the_policies_say_what_happened(console):
    app, db = console
    cid = add(db, assignees=["alice"])
    with db.write() as conn:
        store.append_history(conn, cid, "decision", actor="bob", channel="api", action="approve", outcome="voted",
                             detail={"progress": "1 of 2 approved: bob"})
        store.append_history(conn, cid, "reassigned", actor="alice", channel="console", outcome="applied",
                             detail={"to": "carol", "replaced": ["alice"], "note": "on leave"})
        store.append_history(conn, cid, "escalated", actor="policy", channel="policy", outcome="fired",
                             detail={"step": 1, "added": ["group:leads"]})
    history = section(client_for(app, "alice").get(f"/checkpoints/{cid}").text, "history")
    assert "1 of 2 approved: bob" in history
    assert "to carol, replacing alice · note: on leave" in history
    assert "step 1: added group:leads" in history
