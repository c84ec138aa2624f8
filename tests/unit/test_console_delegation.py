"""Claim, release and reassign from the console: a CheckpointCommand to the decider exactly like the HTTP
API's (commands exchange, routing key CHECKPOINT_COMMAND, channel console, the signed-in reviewer),
CSRF on every POST, every answer said plainly (done, queued, refused with the code), the buttons and
the reassign form offered only to those the decider would let, and the targets of the app only."""
from __future__ import annotations

import pytest

from services.console.auth import Session
from services.console.delegation import reassign_targets
from services.console.gates import commands_gate
from shared.broker import BrokerUnavailable
from shared.models import CheckpointCommand, Reply
from shared.topology import CHECKPOINT_COMMAND
from tests.conftest import make_settings
from tests.unit.console_support import APPS, REVIEWERS, TestClient, add, client_for, csrf_of, policy_console, section

SETTINGS = make_settings("sqlite://", reviewers=REVIEWERS, apps=APPS)


@pytest.fixture
def console(sqlite_url):
    yield from policy_console(sqlite_url)


def post(client, cid: str, command: str, body: dict | None = None, csrf: str | None = None, **kw):
    headers = {"X-CSRF-Token": csrf or csrf_of(client, f"/checkpoints/{cid}"), "Accept": "application/json"}
    return client.post(f"/checkpoints/{cid}/{command}", json=body or {}, headers=headers, **kw)


def test_claim_sends_the_command_to_the_decider_and_says_it_is_done(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob"])
    replies = app.state.replies
    replies.command_answer = Reply(outcome="done", checkpoint_id=cid, progress={
        "claimed_by": "alice", "claimed_at": 1700000000.0, "assignees": ["alice", "bob"], "node_output": "secret"})
    answer = post(client_for(app, "alice"), cid, "claim", {"note": "on it"})
    assert answer.status_code == 200
    assert answer.json() == {"status": "claimed", "command": "claim", "claimed_by": "alice",
                             "claimed_at": 1700000000.0, "assignees": ["alice", "bob"]}  # not the whole checkpoint
    exchange, key, cmd = replies.commands[-1]
    assert exchange == app.state.settings.names.commands and key == CHECKPOINT_COMMAND
    assert isinstance(cmd, CheckpointCommand)
    assert (cmd.checkpoint_id, cmd.command, cmd.actor, cmd.channel, cmd.note) == (cid, "claim", "alice", "console",
                                                                                 "on it")


@pytest.mark.parametrize("reply,status,code", [
    (Reply(outcome="rejected", error_code="not_claimable", error_message="claimed by bob since 1"), 422,
     "not_claimable"),
    (Reply(outcome="rejected", error_code="not_assignee", error_message="alice is not among"), 422, "not_assignee"),
    (Reply(outcome="rejected", error_code="already_resolved", error_message="checkpoint is resolved"), 409,
     "already_resolved"),
    (None, 202, None)])
def test_every_answer_of_the_decider_is_said_with_its_status_and_code(console, reply, status, code):
    app, db = console
    cid = add(db)
    app.state.replies.command_answer = reply
    answer = post(client_for(app, "alice"), cid, "release")
    assert answer.status_code == status
    body = answer.json()
    assert (body["error"]["code"] == code) if code else body["status"] == "accepted"


def test_without_the_csrf_token_or_from_another_site_nothing_is_sent(console):
    app, db = console
    cid = add(db)
    alice = client_for(app, "alice")
    for command in ("claim", "release", "reassign"):
        assert alice.post(f"/checkpoints/{cid}/{command}", json={}).status_code == 403
    csrf = csrf_of(alice, f"/checkpoints/{cid}")
    forged = alice.post(f"/checkpoints/{cid}/claim", json={}, headers={"X-CSRF-Token": csrf,
                                                                       "Origin": "https://evil.example"})
    assert forged.status_code == 403 and app.state.replies.commands == []


def test_a_plain_form_post_lands_back_on_the_page_with_the_outcome(console):
    app, db = console
    cid = add(db)
    alice = client_for(app, "alice")
    app.state.replies.command_answer = Reply(outcome="done", checkpoint_id=cid, progress={"claimed_by": "alice"})
    csrf = csrf_of(alice, f"/checkpoints/{cid}")
    answer = alice.post(f"/checkpoints/{cid}/claim", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/checkpoints/{cid}?outcome=claimed"
    assert "You have claimed this checkpoint" in alice.get(answer.headers["location"]).text
    app.state.replies.command_answer = Reply(outcome="rejected", error_code="not_claimable", error_message="x")
    refused = alice.post(f"/checkpoints/{cid}/release", data={"csrf": csrf}, follow_redirects=False)
    assert refused.headers["location"].endswith("?outcome=not_claimable")


def test_reassign_goes_to_a_reviewer_or_group_of_the_app_only(console):
    app, db = console
    cid = add(db, assignees=["alice"])
    alice = client_for(app, "alice")
    app.state.replies.command_answer = Reply(outcome="done", checkpoint_id=cid, progress={"assignees": ["carol"]})
    done = post(alice, cid, "reassign", {"to": "carol", "note": "she knows the client"})
    assert done.status_code == 200 and done.json()["assignees"] == ["carol"]
    cmd = app.state.replies.commands[-1][2]
    assert (cmd.command, cmd.to, cmd.replace, cmd.note) == ("reassign", "carol", None, "she knows the client")
    sent = len(app.state.replies.commands)
    for target, code in (("zoe", "not_claimable"), ("group:outsiders", "not_claimable"), ("", "invalid_field")):
        refused = post(alice, cid, "reassign", {"to": target})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == code, target
    assert len(app.state.replies.commands) == sent  # none of those reached the decider
    assert post(alice, cid, "reassign", {"to": "carol", "note": "x" * 2001}).status_code == 422


def test_another_apps_checkpoint_and_an_unknown_command_are_404(console):
    app, db = console
    theirs = add(db, app="other")
    zoe_sees = client_for(app, "zoe")
    assert zoe_sees.get(f"/checkpoints/{theirs}").status_code == 200
    alice = client_for(app, "alice")
    csrf = csrf_of(alice)
    assert alice.post(f"/checkpoints/{theirs}/claim", json={}, headers={"X-CSRF-Token": csrf}).status_code == 404
    mine = add(db)
    assert alice.post(f"/checkpoints/{mine}/steal", json={}, headers={"X-CSRF-Token": csrf}).status_code == 404
    assert app.state.replies.commands == []


def test_a_broker_that_does_not_take_the_command_is_a_503(console):
    app, db = console
    cid = add(db)

    async def down(*_args):
        raise BrokerUnavailable("down")

    app.state.replies.request = down
    answer = post(client_for(app, "alice"), cid, "claim")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "broker_unavailable"


def test_the_reassign_form_offers_the_apps_reviewers_and_groups_to_an_assignee_and_an_admin_only(console):
    app, db = console
    cid = add(db, assignees=["alice", "bob"])
    card = section(client_for(app, "alice").get(f"/checkpoints/{cid}").text, "reassign")
    options = card.split('name="to"')[1].split("</select>")[0]
    for name in ("bob", "carol", "dave", "erin", "group:legal"):
        assert f'value="{name}"' in options, name
    assert 'value="alice"' not in options and 'value="zoe"' not in options  # herself, another app's reviewer
    assert 'name="replace"' not in card  # her own seat
    admin = section(client_for(app, "ops").get(f"/checkpoints/{cid}").text, "reassign")
    assert 'name="replace"' in admin and 'value="bob"' in admin.split('name="replace"')[1]
    carol = section(client_for(app, "carol").get(f"/checkpoints/{cid}").text, "reassign")
    assert "<form" not in carol and "Only a named assignee (alice, bob) hands on their seat" in carol


def test_the_commands_gate_follows_the_deciders_rules():
    def session(name):
        return Session(SETTINGS.reviewer(name), "c", 0, "t")

    cp = {"status": "open", "app": "demo", "assignees": ["group:legal"], "claimed_by": None}
    carol = commands_gate(SETTINGS, session("carol"), cp)  # a member of an assigned group
    assert carol.claim == "" and "Nobody has claimed it" in carol.release and carol.reassign  # not a named seat
    assert "not_assignee" in commands_gate(SETTINGS, session("alice"), cp).claim
    held = {**cp, "claimed_by": "dave"}
    assert "not_claimable" in commands_gate(SETTINGS, session("carol"), held).claim
    assert "only they or an admin" in commands_gate(SETTINGS, session("carol"), held).release
    ops = commands_gate(SETTINGS, session("ops"), held)
    assert ops.release == "" and ops.reassign == "" and ops.admin
    assert commands_gate(SETTINGS, session("dave"), held).release == ""
    closed = commands_gate(SETTINGS, session("carol"), {**cp, "status": "resolved"})
    assert closed.claim == closed.release == closed.reassign == "This checkpoint is already decided."
    from services.console.auth import oidc_reviewer

    stranger = Session(oidc_reviewer("yan", ["legal"], None), "c", 0, "t", "oidc", configured=False)
    assert "may not act on checkpoints of app demo" in commands_gate(SETTINGS, stranger, cp).claim
    # The provider's groups count, as for decisions (the console sends them with the command).
    from shared.settings import GroupConfig
    granted = SETTINGS.model_copy(update={"groups": [GroupConfig(name="legal", apps=["demo"])]})
    assert commands_gate(granted, stranger, cp).claim == ""


def test_reassign_targets_are_the_reviewers_granted_the_app_and_their_groups():
    targets = reassign_targets(SETTINGS, "demo")
    assert targets["reviewers"] == ["alice", "bob", "carol", "dave", "erin", "ops"]  # ops: an admin sees every app
    assert targets["groups"] == ["group:legal"]
    assert reassign_targets(SETTINGS, "other") == {"reviewers": ["ops", "zoe"], "groups": ["group:outsiders"]}


def test_nothing_is_claimed_or_decided_in_bulk_before_sign_in(console):
    app, db = console
    cid = add(db)

    anonymous = TestClient(app)
    assert anonymous.post(f"/checkpoints/{cid}/claim", json={}).status_code == 401
    assert anonymous.post("/bulk-decision", json={"ids": [cid], "action": "approve"}).status_code == 401
    assert app.state.replies.commands == [] and app.state.replies.decisions == []
