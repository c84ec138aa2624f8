"""Deciding several checkpoints from the inbox: the preview lists exactly what would be decided and what
the decider would refuse (and why), decided-meanwhile and unknown ids apart; apply decides each on its
own (its own idempotency key `bulk:<id>:<checkpoint>`, channel console) and answers per item —
applied, voted, queued, refused with the code. JSON for a script, pages for a plain form post."""
from __future__ import annotations

import re

import pytest

from shared.models import Reply, Resolution
from tests.unit.console_support import add, client_for, csrf_of, policy_console, quorum, section, vote


@pytest.fixture
def console(sqlite_url):
    yield from policy_console(sqlite_url)


def bulk(client, body: dict, csrf: str | None = None):
    return client.post("/bulk-decision", json=body, headers={"X-CSRF-Token": csrf or csrf_of(client)})


def test_the_inbox_offers_a_checkbox_per_open_checkpoint_for_the_bulk_form(console):
    app, db = console
    cid = add(db)
    alice = client_for(app, "alice")
    inbox = alice.get("/").text
    assert '<form id="bulk" class="bulk" method="post" action="/bulk-decision"' in inbox
    assert f'<input type="checkbox" name="ids" value="{cid}" form="bulk" data-select' in section(inbox, "inbox-list")
    assert 'form="bulk"' not in alice.get("/?status=decided").text  # decided ones are not decided again


def test_the_preview_says_what_would_be_decided_and_who_may(console):
    app, db = console
    mine = add(db, assignees=["alice"])
    bobs = add(db, assignees=["bob"])
    voted = add(db, assignees=["alice", "bob"], policy=quorum(2))
    vote(db, voted, "bob")
    decided = add(db, status="resolved")
    other_app = add(db, app="other")
    answer = bulk(client_for(app, "alice"), {"ids": [mine, bobs, voted, decided, other_app, "nope"],
                                             "action": "approve", "preview": True})
    assert answer.status_code == 200
    body = answer.json()
    assert body["preview"] is True and body["count"] == 3 and body["may_decide"] == 2
    items = {i["id"]: i for i in body["checkpoints"]}
    assert items[mine]["may_decide"] and items[mine]["code"] is None
    assert not items[bobs]["may_decide"] and items[bobs]["code"] == "not_assignee"
    assert items[voted]["vote"] == "counts as one vote of 2 needed (1 approved so far)"
    assert [c["id"] for c in body["closed"]] == [decided] and "approved by bob via api" in body["closed"][0]["label"]
    assert body["not_found"] == [other_app, "nope"]  # another app's checkpoint is as unknown as a made-up id
    assert app.state.replies.decisions == []  # a preview decides nothing


def test_the_preview_knows_the_refusals_of_each_action(console):
    app, db = console
    last = add(db, round_=5, max_rounds=5)
    own = add(db, user="e2e-user", policy=quorum(1, mode="any", no_self_approval=True))
    bob = client_for(app, "bob")
    revise = {i["id"]: i for i in bulk(bob, {"ids": [last, own], "action": "revise", "feedback": "again",
                                             "preview": True}).json()["checkpoints"]}
    assert revise[last]["code"] == "max_rounds_reached" and revise[own]["may_decide"]
    approve = {i["id"]: i for i in bulk(bob, {"ids": [last, own], "action": "approve",
                                              "preview": True}).json()["checkpoints"]}
    assert approve[own]["code"] == "self_approval" and approve[last]["may_decide"]


def test_a_bulk_needs_ids_an_action_its_words_and_the_csrf_token(console):
    app, db = console
    cid = add(db)
    alice = client_for(app, "alice")
    assert alice.post("/bulk-decision", json={"ids": [cid], "action": "approve"}).status_code == 403
    for body, code in (({"ids": [], "action": "approve"}, "nothing_selected"),
                       ({"ids": [cid], "action": "edit"}, "invalid_field"),
                       ({"ids": [cid], "action": "revise"}, "feedback_required"),
                       ({"ids": [cid], "action": "abort", "reason": "  "}, "reason_required"),
                       ({"ids": ["../etc"], "action": "approve"}, "invalid_field"),
                       ({"ids": [f"c{i}" for i in range(501)], "action": "approve"}, "too_many"),
                       ({"ids": "not-a-list", "action": "approve"}, "invalid_field")):
        answer = bulk(alice, body)
        assert answer.status_code in (400, 422) and answer.json()["error"]["code"] == code, body
    assert app.state.replies.decisions == []


def test_apply_decides_each_on_its_own_and_answers_per_item(console):
    app, db = console
    applied, voted, refused, queued = (add(db, assignees=["alice", "bob"], policy=quorum(2) if i == 1 else None)
                                       for i in range(4))
    decided = add(db, status="resolved")

    def answer_for(decision):
        cid = decision.checkpoint_id
        if cid == applied:
            return Reply(outcome="applied", checkpoint_id=cid, resolution=Resolution(
                action="approve", checkpoint_id=cid, round=1, decided_by="alice"))
        if cid == voted:
            return Reply(outcome="voted", checkpoint_id=cid, progress={"progress": "1 of 2 approved: alice"})
        if cid == refused:
            return Reply(outcome="rejected", checkpoint_id=cid, error_code="not_assignee", error_message="no")
        if cid == decided:
            return Reply(outcome="rejected", checkpoint_id=cid, error_code="already_resolved", error_message="late",
                         winning={"action": "approve", "decided_by": "bob", "channel": "api"})
        return None

    app.state.replies.answer_for = answer_for
    body = bulk(client_for(app, "alice"), {"ids": [applied, voted, refused, queued, decided], "action": "approve",
                                           "bulk_id": "0123456789ab"}).json()
    results = {r["checkpoint_id"]: r for r in body["results"]}
    assert results[applied]["status"] == "applied"
    assert results[voted]["status"] == "voted" and results[voted]["progress"] == "1 of 2 approved: alice"
    assert results[refused]["status"] == "refused" and results[refused]["code"] == "not_assignee"
    assert results[queued]["status"] == "accepted"
    # decided since the preview: the decider says who won
    assert results[decided]["code"] == "already_resolved"
    assert results[decided]["message"] == "already decided: approve by bob via api"
    assert body["counts"] == {"applied": 1, "voted": 1, "refused": 2, "accepted": 1}
    sent = app.state.replies.decisions
    every = (applied, voted, refused, queued, decided)
    assert sorted(d.checkpoint_id for d in sent) == sorted(every)
    assert {d.idempotency_key for d in sent} == {f"bulk:0123456789ab:{c}" for c in every}
    assert all(d.channel == "console" and d.actor == "alice" and d.action == "approve" for d in sent)


def test_a_plain_form_post_previews_then_applies_the_ticked_ones_on_pages(console):
    app, db = console
    mine, bobs = add(db, assignees=["alice"]), add(db, assignees=["bob"])
    alice = client_for(app, "alice")
    csrf = csrf_of(alice)
    preview = alice.post("/bulk-decision", data={"csrf": csrf, "preview": "1", "action": "abort", "reason": "stale",
                                                 "ids": [mine, bobs]})
    assert preview.status_code == 200 and "Abort 2 checkpoints?" in preview.text
    ticked = re.findall(r'<input type="checkbox" name="ids" value="([^"]+)" (checked)?', preview.text)
    assert dict(ticked) == {mine: "checked", bobs: ""}  # the one the decider would refuse is not ticked
    assert "not_assignee" in preview.text and "1 of 2" in preview.text
    bulk_id = re.search(r'name="bulk_id" value="([0-9a-f]{12})"', preview.text).group(1)
    app.state.replies.answer = Reply(outcome="applied", checkpoint_id=mine, resolution=Resolution(
        action="abort", checkpoint_id=mine, round=1, decided_by="alice"))
    done = alice.post("/bulk-decision", data={"csrf": csrf, "action": "abort", "reason": "stale", "ids": [mine],
                                              "bulk_id": bulk_id})
    assert done.status_code == 200 and 'data-result="' + mine + '" data-status="applied"' in done.text
    [sent] = app.state.replies.decisions
    assert sent.reason == "stale" and sent.idempotency_key == f"bulk:{bulk_id}:{mine}"
    empty = alice.post("/bulk-decision", data={"csrf": csrf, "action": "approve"})
    assert empty.status_code == 422 and "Select at least one checkpoint." in empty.text
