"""The console's Dify form checkpoints (native Human Input node): the form rendered with its inputs in
place, the decision builder's mapping of a form action onto a decision, the delivery states, the
"paused in Dify — no form token" note, and the form token never reaching a page."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from services.console import render, review, views
from services.console.web import BadRequest
from shared.models import Action, Reply, Resolution
from shared.store import checkpoints as store
from shared.store import runs as run_store
from tests.unit.console_support import TestClient, csrf_of, sign_in

TOKEN = "hIdvldjxc23xTU6LqFv6aE"
FORM = {
    "form_id": "01a212e0-0026-74e7-a0ab-e6d1f9d08ef2", "node_title": "Review", "display_in_ui": True,
    "form_content": "## Review the draft\n\nTopic: **Press <release>**\n\nEdit the text below if needed:\n\n"
                    "{{#$output.edited#}}\n\nTitle: {{#$output.title#}} and {{#$output.nowhere#}}",
    "inputs": [{"type": "paragraph", "output_variable_name": "edited",
                "default": {"type": "variable", "selector": ["start", "topic"], "value": ""}},
               {"type": "text_input", "output_variable_name": "title", "default": {"type": "constant", "value": "T1"}},
               {"type": "text_input", "output_variable_name": "extra", "default": {"type": "constant", "value": ""}}],
    "actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                {"id": "revise", "title": "Request revision", "button_style": "default"},
                {"id": "publish_now", "title": "Publish now", "button_style": "accent"},
                {"id": "abort", "title": "Abort", "button_style": "ghost"}],
    "resolved_default_values": {"edited": "Press <release>\nline two"},
    "expiration_time": time.time() + 3600,
}


def add_form(db, *, run_id: str | None = None, status: str = "open", delivery: str | None = None,
             detail: str | None = None, output=None) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    with db.write() as conn:
        store.insert_if_absent(conn, dict(
            id=cid, app="demo", kind="dify-form", workflow_run_id=run_id or str(uuid.uuid4()), node_id="review",
            round=1,
            status=status, mode="hold", message="Review", node_output=FORM["resolved_default_values"], timeout_s=3720,
            deadline=now + 3720, on_timeout="abort", assignees=[], max_rounds=5, created_at=now, updated_at=now,
            form=FORM, secret=TOKEN, delivery=delivery, delivery_detail=detail, output=output,
            action="revise" if status == "resolved" else None, decided_by="alice" if status == "resolved" else None,
            resolved_at=now if status == "resolved" else None))
        store.append_history(conn, cid, "captured", actor="dify", channel="poller",
                             detail={"detail": f"POST /v1/form/human_input/{TOKEN} said hello"})
    return cid


def add_run(db, status: str) -> str:
    run_id = str(uuid.uuid4())
    with db.write() as conn:
        run_store.ensure(conn, "demo", run_id, "gateway")
        run_store.set_status(conn, "demo", run_id, status)
        run_store.append_history(conn, "demo", run_id, "event", detail={"message": f"see /v1/form/human_input/{TOKEN}"})
    return run_id


# ---------------------------------------------------------------------- rendering
def test_the_form_markdown_is_safe_and_its_input_markers_become_the_input_fields():
    html = str(render.form_html(FORM))
    assert "{{#$output" not in html and "<release>" not in html and "Press &lt;release&gt;" in html
    assert '<h4 class="md-h">Review the draft</h4>' in html
    # a marker alone in its paragraph becomes a block field; one inside a line an inline one
    assert re.search(r'<div class="ff ff-paragraph" data-field="edited">.*?data-form-preview="edited">'
                     r'Press &lt;release&gt;\nline two</span></div>', html)
    assert '<span class="ff ff-text_input" data-field="title">' in html and ">T1</span>" in html
    assert '<code class="ff-unknown">nowhere</code>' in html  # a marker without an input stays visible
    assert 'data-field="extra"' in html  # an input without a marker is still shown
    sent = str(render.form_html(FORM, {"edited": "Edited <b>text</b>"}))
    assert "Edited &lt;b&gt;text&lt;/b&gt;" in sent and "line two" not in sent


def test_form_inputs_take_resolved_defaults_then_constant_defaults():
    shown = [{k: i[k] for k in ("name", "type", "default")} for i in render.form_inputs(FORM)]
    assert shown == [
        {"name": "edited", "type": "paragraph", "default": "Press <release>\nline two"},
        {"name": "title", "type": "text_input", "default": "T1"},
        {"name": "extra", "type": "text_input", "default": ""}]
    assert render.form_inputs(None) == []


@pytest.mark.parametrize("action_id,kind", [
    ("approve", "approve"), ("Approved", "approve"), ("accept", "approve"), ("revise", "revise"),
    ("request_revision", "revise"), ("abort", "abort"), ("reject", "abort"), ("cancel", "abort"), ("deny", "abort"),
    ("stop", "abort"), ("reject_draft", "abort"), ("publish_now", "approve"), ("escalate", "approve")])
def test_a_form_action_id_maps_to_a_decision(action_id, kind):
    assert render.form_action_kind(action_id) == kind


def test_the_builder_sends_the_action_id_and_the_inputs():
    cp = {"id": "c1", "kind": "dify-form", "form": FORM}
    assert review.DECISION_BUILDERS["dify-form"] is review.form_decision
    dec = review.form_decision(cp, {"form_action": "revise", "form_inputs": {"edited": "x", "n": 3}}, "alice")
    assert (dec.action, dec.form_action, dec.form_inputs) == (Action.revise, "revise", {"edited": "x", "n": "3"})
    assert (dec.actor, dec.channel, dec.checkpoint_id, dec.feedback) == ("alice", "console", "c1", None)
    other = review.form_decision(cp, {"form_action": "publish_now", "form_inputs": {}}, "alice")
    assert (other.action, other.form_action) == (Action.approve, "publish_now")
    assert review.form_decision(cp, {"form_action": "reject", "form_inputs": {}}, "a").action == Action.abort
    plain = review.form_decision(cp, {"form_action": "approve", "input:edited": "typed", "csrf": "x"}, "a")
    assert plain.form_inputs == {"edited": "typed"}  # a plain form post (no JavaScript)
    with pytest.raises(BadRequest) as missing:
        review.form_decision(cp, {"form_inputs": {}}, "a")
    assert (missing.value.status, missing.value.code) == (422, "action_required")
    with pytest.raises(BadRequest) as bad:
        review.form_decision(cp, {"form_action": "approve", "form_inputs": ["x"]}, "a")
    assert bad.value.code == "invalid_field"


def test_a_token_in_dify_text_is_scrubbed():
    assert views.scrub({"a": [f"x {TOKEN} y"]}, {TOKEN}) == {"a": ["x [form token] y"]}
    said = "Form not found. You have requested this URI [/v1/form/human_input/abc-123] but did you mean " \
           "/v1/form/human_input/<string:form_token> ?"
    assert views.scrub(said) == ("Form not found. You have requested this URI [/v1/form/human_input/[form token]] but "
                                 "did you mean /v1/form/human_input/<string:form_token> ?")


# ---------------------------------------------------------------------- pages
def test_the_form_page_shows_the_form_its_fields_and_actions_and_never_the_token(console):
    app, db = console
    cid = add_form(db)
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}").text
    assert TOKEN not in page and "{{#$output" not in page
    assert '<textarea id="fi-edited" name="input:edited"' in page
    assert ">Press &lt;release&gt;\nline two</textarea>" in page
    assert '<input id="fi-title" name="input:title" value="T1"' in page
    buttons = re.findall(r'<button type="submit" name="form_action" value="([^"]+)" class="btn dbtn (\w+)"[^>]*>'
                         r'<kbd>(\d)</kbd>([^<]+)</button>', page)
    assert buttons == [("approve", "blue", "1", "Approve"), ("revise", "plain", "2", "Request revision"),
                       ("publish_now", "blue", "3", "Publish now"), ("abort", "ghost", "4", "Abort")]
    assert "Dify expires the form in" in page and 'class="badge dify"' in page
    assert 'data-delivery="waiting"' in page
    assert "[form token]" in page  # the history line from Dify, scrubbed
    inbox = client.get("/").text
    assert TOKEN not in inbox and re.search(r"Review</a> <span class=\"badge dify\"[^>]*>Dify form</span>", inbox)
    assert "then Dify's Timeout branch" in inbox


@pytest.mark.parametrize("delivery,color,label", [
    ("pending", "yellow", "delivery pending"), ("delivered", "yellow", "delivered"), ("resumed", "green", "resumed"),
    ("resume_stuck", "red", "resume stuck"), ("resumed_as_stopped", "red", "resumed as stopped"),
    ("failed", "red", "delivery failed")])
def test_the_delivery_state_is_shown_in_its_color(console, delivery, color, label):
    app, db = console
    detail = f"404 not_found: Form not found. You have requested this URI [/v1/form/human_input/{TOKEN}]" \
        if delivery == "failed" else None
    cid = add_form(db, status="resolved", delivery=delivery, detail=detail,
                   output={"action": "revise", "inputs": {"edited": "Edited by alice", "title": "T1"}})
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}").text
    region = re.search(r'<div class="delivery (\w+)" data-live="delivery"[^>]*>(.*?)</div>\n<div class="dform', page,
                       re.S)
    assert region.group(1) == color
    assert f'<span class="pill {color}" data-delivery-label>{label}</span>' in region.group(2)
    assert "Sent: <strong>Request revision</strong>" in region.group(2)
    assert "Edited by alice" in page and "<code>revise</code>" in page and "data-form-action" not in page
    assert TOKEN not in page
    if detail:
        assert '<div class="delivery-detail">404 not_found: Form not found.' in page


def test_a_form_decision_from_the_page_reaches_the_decider_with_its_action_and_inputs(console):
    app, db = console
    cid = add_form(db)
    client = TestClient(app)
    sign_in(client)
    app.state.replies.answer = Reply(outcome="applied", checkpoint_id=cid, resolution=Resolution(
        action="revise", checkpoint_id=cid, round=1, decided_by="alice"))
    ok = client.post(f"/checkpoints/{cid}/decision", headers={"X-CSRF-Token": csrf_of(client)},
                     json={"form_action": "revise", "form_inputs": {"edited": "Shorter please", "title": "T1"}})
    assert ok.status_code == 200
    sent = app.state.replies.decisions[-1]
    assert (sent.action, sent.form_action, sent.form_inputs) == (Action.revise, "revise",
                                                                 {"edited": "Shorter please", "title": "T1"})
    app.state.replies.answer = Reply(outcome="rejected", checkpoint_id=cid, error_code="missing_inputs",
                                     error_message="inputs without a value: ['edited']")
    refused = client.post(f"/checkpoints/{cid}/decision", headers={"X-CSRF-Token": csrf_of(client)},
                          json={"form_action": "approve", "form_inputs": {"edited": ""}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "missing_inputs"
    no_js = client.post(f"/checkpoints/{cid}/decision", data={"csrf": csrf_of(client), "form_action": "approve",
                                                             "input:edited": ""}, follow_redirects=True)
    assert "Every input of the form needs a value." in no_js.text


def test_a_run_paused_in_dify_without_a_form_checkpoint_says_so(console):
    app, db = console
    bare = add_run(db, "paused")
    with_form = add_run(db, "paused")
    add_form(db, run_id=with_form)
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/runs/{bare}").text
    assert "Paused in Dify — no form token." in page and TOKEN not in page and "[form token]" in page
    other = client.get(f"/runs/{with_form}").text
    assert "no form token" not in other and 'class="badge dify"' in other and TOKEN not in other
    runs = client.get("/runs").text
    assert runs.count("paused in Dify — no form token") == 1 and TOKEN not in runs
