"""The console app in-process (Starlette TestClient, a real SQLite store, a stand-in for the decider's
replies): sign-in, sessions, CSRF, how decider answers map to HTTP answers, and safe pages."""
from __future__ import annotations

import pytest

from services.console.auth import COOKIE, Sessions, safe_next
from shared.models import Reply
from shared.passwords import hash_password
from tests.unit.console_support import PASSWORD, Replies, TestClient, add_checkpoint, csrf_of, resolved, sign_in


def test_nothing_is_shown_before_sign_in(console):
    client = TestClient(console[0])
    answer = client.get("/runs?status=failed", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fruns%3Fstatus%3Dfailed"
    assert client.get("/events").status_code == 401
    assert client.get("/api/session").json()["error"]["code"] == "unauthorized"
    assert client.post("/checkpoints/x/decision", json={"action": "approve"}).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/static/console.js").status_code == 200


def test_sign_in_with_a_password_or_a_token_and_a_wrong_one_is_refused(console):
    client = TestClient(console[0])
    refused = sign_in(client, password="wrong")
    assert refused.status_code == 401 and "Wrong name or password." in refused.text
    assert sign_in(client, name="nobody").status_code == 401
    ok = sign_in(client, next_="/runs")
    assert ok.status_code == 303 and ok.headers["location"] == "/runs"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert client.get("/api/session").json()["name"] == "alice"
    bob = TestClient(console[0])
    assert sign_in(bob, "bob", "rv-bob-token").status_code == 303


def test_sign_in_needs_the_forms_nonce_and_pauses_after_repeated_failures(console):
    client = TestClient(console[0])
    client.get("/login")
    forged = client.post("/login", data={"name": "alice", "password": PASSWORD, "csrf": "guess"},
                         follow_redirects=False)
    assert forged.status_code == 403
    for _ in range(3):
        sign_in(client, password="wrong")
    assert sign_in(client).status_code == 429


def test_a_tampered_or_outdated_session_cookie_is_not_a_session(console):
    app, _ = console
    client = TestClient(app)
    sign_in(client)
    value = client.cookies[COOKIE]
    client.cookies.set(COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303
    sessions: Sessions = app.state.sessions
    alice = app.state.settings.reviewer("alice")
    changed = alice.model_copy(update={"password_hash": hash_password("new one", iterations=1000)})
    assert sessions.fingerprint(changed) != sessions.fingerprint(alice)  # a new password ends old sessions


@pytest.mark.parametrize("target,expected", [("/runs", "/runs"), ("//evil.com", "/"), ("https://evil.com", "/"),
                                             ("/\\evil.com", "/"), (None, "/")])
def test_after_sign_in_only_local_paths(target, expected):
    assert safe_next(target) == expected


def test_pages_show_open_checkpoints_escaped_and_with_security_headers(console):
    app, db = console
    cid = add_checkpoint(db, node_output="<script>alert(1)</script> **bold**")
    client = TestClient(app)
    sign_in(client)
    inbox = client.get("/")
    assert "<title>(1) Inbox — dify-hitl</title>" in inbox.text and cid in inbox.text
    assert "script-src 'self'" in inbox.headers["content-security-policy"]
    assert inbox.headers["cache-control"] == "no-store"
    page = client.get(f"/checkpoints/{cid}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <strong>bold</strong>" in page.text
    assert "<script>alert" not in page.text
    assert client.get("/checkpoints/nope").status_code == 404


def test_a_decision_without_the_csrf_token_is_refused(console):
    app, db = console
    cid = add_checkpoint(db)
    client = TestClient(app)
    sign_in(client)
    assert client.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}).status_code == 403
    assert client.post(f"/checkpoints/{cid}/decision", data={"action": "approve", "csrf": "x"}).status_code == 403
    other_site = client.post(f"/checkpoints/{cid}/decision", json={"action": "approve"},
                             headers={"X-CSRF-Token": csrf_of(client), "Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert app.state.replies.decisions == []


def test_decisions_go_to_the_decider_as_the_signed_in_reviewer_and_map_like_the_api(console):
    app, db = console
    cid = add_checkpoint(db)
    client = TestClient(app)
    sign_in(client)
    headers = {"X-CSRF-Token": csrf_of(client), "Accept": "application/json"}
    replies: Replies = app.state.replies
    replies.answer = resolved(cid)
    ok = client.post(f"/checkpoints/{cid}/decision", json={"action": "approve", "idempotency_key": "k1"},
                     headers=headers)
    assert ok.status_code == 200 and ok.json()["resolution"]["action"] == "approve"
    sent = replies.decisions[-1]
    assert (sent.actor, sent.channel, sent.checkpoint_id, sent.idempotency_key) == ("alice", "console", cid, "k1")
    replies.answer = None
    assert client.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}, headers=headers).status_code == 202
    replies.answer = Reply(outcome="rejected", checkpoint_id=cid, error_code="already_resolved", error_message="done",
                           winning={"action": "approve", "decided_by": "bob", "channel": "cli"})
    late = client.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}, headers=headers)
    assert late.status_code == 409 and late.json()["error"]["winning_decision"]["decided_by"] == "bob"
    replies.answer = Reply(outcome="rejected", checkpoint_id=cid, error_code="not_assignee", error_message="no")
    assert client.post(f"/checkpoints/{cid}/decision", json={"action": "approve"}, headers=headers).status_code == 422
    assert client.post("/checkpoints/nope/decision", json={"action": "approve"}, headers=headers).status_code == 404


def test_revise_abort_and_edit_carry_their_fields(console):
    app, db = console
    cid = add_checkpoint(db)
    client = TestClient(app)
    sign_in(client)
    headers = {"X-CSRF-Token": csrf_of(client)}
    replies: Replies = app.state.replies
    replies.answer = resolved(cid)
    client.post(f"/checkpoints/{cid}/decision", json={"action": "revise", "feedback": "shorter"}, headers=headers)
    assert replies.decisions[-1].feedback == "shorter"
    refused = client.post(f"/checkpoints/{cid}/decision", json={"action": "abort", "reason": " "}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "reason_required"
    client.post(f"/checkpoints/{cid}/decision", json={"action": "abort", "reason": "off topic"}, headers=headers)
    assert replies.decisions[-1].reason == "off topic"
    client.post(f"/checkpoints/{cid}/decision", json={"action": "edit", "output": "{not json but text"},
                headers=headers)
    assert replies.decisions[-1].output == "{not json but text" and replies.decisions[-1].has_output


def test_an_edit_of_a_json_output_must_be_valid_json(console):
    app, db = console
    cid = add_checkpoint(db, node_output={"title": "t", "tags": ["a"]})
    text_cid = add_checkpoint(db, node_output='{"kept": "as text"}')
    client = TestClient(app)
    sign_in(client)
    headers = {"X-CSRF-Token": csrf_of(client)}
    replies: Replies = app.state.replies
    bad = client.post(f"/checkpoints/{cid}/decision", json={"action": "edit", "output": '{"title": '}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_json"
    assert "line 1, column 11" in bad.json()["error"]["message"] and replies.decisions == []
    replies.answer = resolved(cid, "edit")
    client.post(f"/checkpoints/{cid}/decision", json={"action": "edit", "output": '{"title": "new"}'}, headers=headers)
    assert replies.decisions[-1].output == {"title": "new"}
    client.post(f"/checkpoints/{text_cid}/decision", json={"action": "edit", "output": '{"kept": 2}'}, headers=headers)
    assert replies.decisions[-1].output == '{"kept": 2}'  # a JSON string stays a string


def test_a_browser_without_javascript_posts_a_form_and_is_sent_back_with_the_outcome(console):
    app, db = console
    cid = add_checkpoint(db)
    client = TestClient(app)
    sign_in(client)
    app.state.replies.answer = resolved(cid)
    answer = client.post(f"/checkpoints/{cid}/decision", data={"action": "approve", "csrf": csrf_of(client)},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/checkpoints/{cid}?outcome=applied"
    assert "Decision applied." in client.get(answer.headers["location"]).text
