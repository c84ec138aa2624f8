"""Dify 1.15–1.17 Human Input inputs on the form page: a select is a select, a file or file list takes
links (sent as remote_url: an upload cannot go through us), an input type we do not know is shown
read-only with a note, and the decider's 422 unsupported_input is shown plainly."""
from __future__ import annotations

import time
import uuid

from shared.models import Reply
from shared.store import checkpoints as store
from tests.unit.console_support import TestClient, csrf_of, sign_in

FORM = {
    "node_title": "Review", "form_content": "Pick a tone: {{#$output.tone#}}\n\n{{#$output.attachment#}}",
    "inputs": [{"type": "select", "output_variable_name": "tone", "options": ["formal", "casual"]},
               {"type": "file", "output_variable_name": "attachment"},
               {"type": "file-list", "output_variable_name": "evidence", "max_length": 3},
               {"type": "paragraph", "output_variable_name": "notes"}],
    "actions": [{"id": "approve", "title": "Approve", "button_style": "primary"}],
    "resolved_default_values": {"tone": "casual"}, "expiration_time": time.time() + 3600,
}


def add_form(db, form=FORM) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    with db.write() as conn:
        store.insert_if_absent(conn, dict(
            id=cid, app="demo", kind="dify-form", workflow_run_id=str(uuid.uuid4()), node_id="review", round=1,
            status="open", mode="hold", message="Review", node_output={}, timeout_s=3600, deadline=now + 3600,
            on_timeout="abort", assignees=[], max_rounds=1, created_at=now, updated_at=now, form=form,
            secret="tok-secret"))
    return cid


def test_a_select_is_a_select_and_file_inputs_ask_for_links(console):
    app, db = console
    cid = add_form(db)
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}").text
    assert '<select id="fi-tone" name="input:tone"' in page
    assert '<option value="casual" selected>casual</option>' in page
    assert '<option value="formal" >formal</option>' in page
    assert '<input id="fi-attachment" name="input:attachment" type="url"' in page
    assert '<textarea id="fi-evidence" name="input:evidence"' in page
    assert page.count("Uploading a file cannot go through dify-hitl") == 2 and "remote_url" in page


def test_links_become_remote_url_files_and_a_bad_link_or_choice_is_refused_before_sending(console):
    app, db = console
    cid = add_form(db)
    client = TestClient(app)
    sign_in(client)
    headers = {"X-CSRF-Token": csrf_of(client), "Accept": "application/json"}
    inputs = {"tone": "formal", "attachment": "https://files.example/a.pdf", "notes": "ok",
              "evidence": "https://files.example/1.png\n\nhttps://files.example/2.png"}
    client.post(f"/checkpoints/{cid}/decision", json={"form_action": "approve", "form_inputs": inputs}, headers=headers)
    sent = app.state.replies.decisions[-1].form_inputs
    assert sent["attachment"] == {"transfer_method": "remote_url", "url": "https://files.example/a.pdf"}
    assert sent["evidence"] == [{"transfer_method": "remote_url", "url": "https://files.example/1.png"},
                                {"transfer_method": "remote_url", "url": "https://files.example/2.png"}]
    assert sent["tone"] == "formal" and sent["notes"] == "ok"
    for bad in ({"attachment": "file:///etc/passwd"}, {"tone": "angry"}, {"attachment": "https://a/1\nhttps://a/2"}):
        answer = client.post(f"/checkpoints/{cid}/decision",
                             json={"form_action": "approve", "form_inputs": {**inputs, **bad}}, headers=headers)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_input", bad
    assert len(app.state.replies.decisions) == 1


def test_an_unknown_input_type_is_shown_read_only_and_the_deciders_refusal_is_plain(console):
    app, db = console
    form = {**FORM, "inputs": [{"type": "signature", "output_variable_name": "sig"}]}
    cid = add_form(db, form)
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}").text
    assert 'data-unsupported-input="sig"' in page and "<code>sig</code>: signature" in page
    assert "422 unsupported_input" in page and "Decide it in Dify" in page
    app.state.replies.answer = Reply(outcome="rejected", checkpoint_id=cid, error_code="unsupported_input",
                                     error_message="input 'sig' has type 'signature', which dify-hitl cannot fill")
    answer = client.post(f"/checkpoints/{cid}/decision", json={"form_action": "approve", "form_inputs": {}},
                         headers={"X-CSRF-Token": csrf_of(client), "Accept": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "unsupported_input"
    plain = client.post(f"/checkpoints/{cid}/decision", data={"form_action": "approve", "csrf": csrf_of(client)},
                        follow_redirects=False)
    assert plain.headers["location"].endswith("?outcome=unsupported_input")
    shown = client.get(plain.headers["location"]).text
    assert "This form has an input dify-hitl cannot fill: decide it in Dify." in shown
