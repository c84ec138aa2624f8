"""The step view (`hitl instrument --step` checkpoints) and buttons disabled with their reason."""
from __future__ import annotations

import time
import uuid

from services.console.auth import Session, oidc_reviewer
from services.console.gates import gate
from services.console.steps import is_step
from shared.settings import GroupConfig
from shared.store import checkpoints as store
from shared.store import runs as run_store
from tests.conftest import make_settings
from tests.unit.console_support import TestClient, add_checkpoint, csrf_of, resolved, sign_in

STEP = {"start": {"topic": "launch"}, "llm": {"text": "Draft about launch", "usage": {"tokens": 12}}}


def add_step(db, run_id: str, node_output=STEP, max_rounds: int = 1) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    with db.write() as conn:
        store.insert_if_absent(conn, dict(
            id=cid, app="demo", kind="http", workflow_run_id=run_id, node_id="llm", round=1, status="open",
            mode="hold", message="Step: LLM finished", node_output=node_output, workflow_id="wf", timeout_s=300,
            deadline=now + 300, on_timeout="abort", assignees=[], max_rounds=max_rounds, created_at=now,
            updated_at=now))
    return cid


def test_a_step_checkpoint_is_known_by_its_shape_and_single_round():
    cp = {"kind": "http", "max_rounds": 1, "node_output": STEP, "node_id": "llm"}
    assert is_step(cp)
    assert not is_step({**cp, "max_rounds": 3})
    assert not is_step({**cp, "node_id": "other"})  # the stepped node is among the nodes so far
    assert not is_step({**cp, "node_output": {"llm": "text"}})
    assert not is_step({**cp, "kind": "dify-form"})


def test_the_step_page_inspects_each_nodes_variables_and_names_the_next_node(console):
    app, db = console
    with db.write() as conn:  # an earlier streamed run of the workflow went llm → publish
        run_store.ensure(conn, "demo", "earlier", "gateway", workflow_id="wf")
        for node, title in (("start", "Start"), ("llm", "Write draft"), ("hitl_step_llm", "Step"),
                            ("publish", "Publish")):
            run_store.upsert_node(conn, "demo", "earlier", f"e-{node}", "succeeded", node_id=node, title=title,
                                  inputs={"query": "from start"} if node == "llm" else None)
        run_store.ensure(conn, "demo", "now", "gateway", workflow_id="wf")
        run_store.upsert_node(conn, "demo", "now", "n-llm", "succeeded", node_id="llm", title="Write draft",
                              inputs={"query": "launch"})
    cid = add_step(db, "now")
    client = TestClient(app)
    sign_in(client)
    page = client.get(f"/checkpoints/{cid}").text
    assert "Step: after Write draft" in page and 'data-step-node="start"' in page
    assert "Draft about launch" in page and "query" in page  # outputs, and the node's recorded inputs
    assert "Next:</span> <strong>Publish</strong>" in page and "the last run of this workflow" in page
    assert "Rounds" not in page and "Edit variables, then continue" in page and "Revise" not in page


def test_edit_then_continue_sends_the_edited_variables_as_an_edit(console):
    app, db = console
    cid = add_step(db, "r1")
    client = TestClient(app)
    sign_in(client)
    app.state.replies.answer = resolved(cid, "edit")
    token = csrf_of(client)
    client.post(f"/checkpoints/{cid}/decision", follow_redirects=False,
                data={"action": "edit", "csrf": token, "step:llm:text": "Better draft",
                      "step:llm:usage": '{"tokens": 3}'})
    sent = app.state.replies.decisions[-1]
    assert sent.action.value == "edit" and sent.output == {"start": {"topic": "launch"},
                                                            "llm": {"text": "Better draft", "usage": {"tokens": 3}}}
    bad = client.post(f"/checkpoints/{cid}/decision", headers={"Accept": "application/json"},
                      data={"action": "edit", "csrf": token, "step:llm:usage": "{not json"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_json"
    unknown = client.post(f"/checkpoints/{cid}/decision", headers={"Accept": "application/json"},
                          data={"action": "edit", "csrf": token, "step:nope:x": "1"})
    assert unknown.status_code == 422


def test_buttons_are_disabled_with_the_reason_for_a_reviewer_who_may_not_decide(console):
    app, db = console
    cid = add_checkpoint(db, assignees=["alice"])
    bob = TestClient(app)
    sign_in(bob, "bob", "rv-bob-token")
    page = bob.get(f"/checkpoints/{cid}").text
    assert "Assigned to alice; you are not among them" in page
    decision = page[page.index('data-live="decision"'):page.index('data-live="history"')]
    assert decision.count('disabled title="Assigned to alice') == 4  # approve, revise, edit, abort
    claim = page[page.index('data-command="claim"'):]
    assert claim[:claim.index("</form>")].count('disabled title="Assigned to alice') == 1  # and claiming it
    assert "not yours to decide" in bob.get("/").text
    alice = TestClient(app)
    sign_in(alice)
    assert 'disabled title="Assigned' not in alice.get(f"/checkpoints/{cid}").text


def test_the_gate_says_what_the_decider_would_say():
    settings = make_settings("sqlite://")
    cp = {"status": "open", "app": "demo", "assignees": [], "kind": "http", "round": 3, "max_rounds": 3}
    carol = settings.reviewer("carol")
    assert carol is not None
    ok = gate(settings, Session(carol, "c", 0, "t"), cp)
    assert ok.allowed and "last one" in ok.revise_reason
    assert not gate(settings, Session(carol, "c", 0, "t"), {**cp, "status": "resolved"}).allowed
    stranger = oidc_reviewer("zoe", ["editors"], None)  # signed in with the identity provider only
    closed = gate(settings, Session(stranger, "c", 0, "t", "oidc", configured=False), cp)
    assert not closed.allowed and "may not decide for app demo" in closed.reason  # no group grants demo
    # The provider's groups count for the decider too (the console sends them as actor_groups).
    by_group_only = gate(settings, Session(oidc_reviewer("alice", ["legal"], settings.reviewer("alice")), "c", 0, "t",
                                           "oidc"), {**cp, "assignees": ["group:legal"]})
    assert by_group_only.allowed
    granted = make_settings("sqlite://", groups=[GroupConfig(name="editors", apps=["demo"])])
    assert gate(granted, Session(stranger, "c", 0, "t", "oidc", configured=False), cp).allowed
