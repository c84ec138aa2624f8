"""Decision policies through the real processes and the Dify simulator: a quorum, reject-wins,
self-approval, a reminder and escalations that fire once after every decider was killed, the
audit log catching an edited row, and app scope on every channel."""
from __future__ import annotations

import json
import signal
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from demo.stack import APP_TOKEN, DEMO_BOT, DIFY_APP_KEY, ProcessStack
from shared.store import Database
from tests.e2e.harness import E2E, set_checkpoint_body

pytestmark = pytest.mark.e2e
REVIEWERS = [{"name": "alice", "token": "rv-alice-token", "apps": ["demo"]},
             {"name": "bob", "token": "rv-bob-token", "apps": ["demo"], "end_users": ["e2e"]},
             {"name": "carol", "token": "rv-carol-token", "apps": ["demo"]},
             {"name": "zoe", "token": "rv-zoe-token", "apps": ["other"]}]
ZOE = {"Authorization": "Bearer rv-zoe-token"}


@pytest.fixture
def e2e(tmp_path, sqlite_url, rabbitmq_url):
    probe = ProcessStack(tmp_path / "ports")
    apps = [{"name": "demo", "checkpoint_token": APP_TOKEN, "dify_base_url": f"http://127.0.0.1:{probe.ports['sim']}",
             "dify_api_key": DIFY_APP_KEY}, {"name": "other", "checkpoint_token": "cp-other-token-0001"}]
    env = {"HITL_REVIEWERS": json.dumps(REVIEWERS), "HITL_APPS": json.dumps(apps)}
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, ports=probe.ports,
                      env=env) as stack:
        harness = E2E(stack)
        yield harness
        harness.close()


def register(e2e: E2E, **body) -> None:
    e2e.register(lambda g: set_checkpoint_body(g, **body))


def history(e2e: E2E, checkpoint_id: str) -> list[dict]:
    r = httpx.get(f"{e2e.stack.ingest_url}/v1/checkpoints/{checkpoint_id}",
                  headers={"Authorization": "Bearer rv-alice-token"}, timeout=10)
    return r.json()["history"]


def test_a_two_of_three_quorum_releases_at_the_second_approve_and_one_abort_ends_another(e2e):
    register(e2e, assignees=["alice", "bob", "carol"], approval={"mode": "m_of_n", "m": 2})
    run = e2e.start_run("quorum")
    cp = e2e.wait_open()[0]
    assert "1 of 2 approved: alice" in e2e.decide(cp["id"], "approve")
    assert not run.done()
    e2e.hitl("decide", cp["id"], "approve", reviewer_token="rv-carol-token")
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"]["text"].startswith("Draft 1 about quorum")

    aborted = e2e.start_run("one abort")
    second = e2e.wait_open(exclude={cp["id"]})[0]
    e2e.decide(second["id"], "approve")
    out = e2e.hitl("decide", second["id"], "abort", "--reason", "not this one", reviewer_token="rv-carol-token")
    assert out.returncode == 0, out.stderr
    assert aborted.result(timeout=60)["data"]["outputs"]["decision"].startswith('{"action":"abort"')


def test_the_reviewer_who_started_the_run_may_not_approve_it(e2e):
    register(e2e, no_self_approval=True)
    run = e2e.start_run("mine")
    cp = e2e.wait_open()[0]
    out = e2e.hitl("decide", cp["id"], "approve", reviewer_token="rv-bob-token")
    assert out.returncode == 1 and "self_approval" in out.stderr
    e2e.decide(cp["id"], "approve")  # alice may
    assert run.result(timeout=60)["data"]["status"] == "succeeded"


def test_a_reminder_and_escalations_fire_once_after_every_decider_was_killed(e2e):
    register(e2e, assignees=["alice"], remind_every_s=10,
             escalate=[{"after_s": 12, "add_assignees": ["carol"]}, {"after_s": 22, "apply": "abort"}])
    e2e.stack.start("decider", replica=2)
    run = e2e.start_run("nobody answers")
    cp = e2e.wait_open()[0]
    for key in ("decider", "decider-2"):
        e2e.stack.kill(key, signal.SIGKILL)
    time.sleep(14)  # the reminder and the first escalation fall due while no decider runs
    e2e.stack.start("decider")
    e2e.stack.start("decider", replica=2)
    data = run.result(timeout=60)["data"]
    assert data["outputs"]["decision"].startswith('{"action":"abort"')
    rows = history(e2e, cp["id"])
    steps = [(h["kind"], h["detail"].get("step")) for h in rows if h["kind"] in ("reminder", "escalated")]
    assert steps.count(("reminder", 1)) == 1 and steps.count(("escalated", 1)) == 1
    assert steps.count(("escalated", 2)) == 1
    final = next(h for h in rows if h["kind"] == "escalated" and h["detail"]["step"] == 2)
    assert final["outcome"] == "applied" and final["action"] == "abort"
    shown = e2e.hitl("show", cp["id"]).stdout
    assert "abort by policy" in shown and "carol" in shown


def test_the_audit_log_verifies_and_names_a_row_edited_in_the_store(e2e):
    e2e.register()
    run = e2e.start_run("audited")
    cp = e2e.wait_open()[0]
    e2e.decide(cp["id"], "approve")
    run.result(timeout=60)
    ok = e2e.hitl("audit", "verify")
    assert ok.returncode == 0 and "verified" in ok.stdout, ok.stdout + ok.stderr
    db = Database(e2e.stack.env["HITL_DATABASE_URL"])
    with db.write() as conn:
        conn.execute(text("UPDATE checkpoint_history SET actor = 'mallory' WHERE kind = 'decision'"))
    db.dispose()
    bad = e2e.hitl("audit", "verify")
    assert bad.returncode == 1 and f"checkpoint {cp['id']}" in bad.stdout and "edited" in bad.stdout


def test_a_reviewer_of_another_app_sees_and_decides_nothing_on_any_channel(e2e):
    e2e.register()
    run = e2e.start_run("scoped")
    cp = e2e.wait_open()[0]
    base = e2e.stack.ingest_url
    assert httpx.get(f"{base}/v1/checkpoints?status=open", headers=ZOE).json()["total"] == 0
    assert httpx.get(f"{base}/v1/checkpoints/{cp['id']}", headers=ZOE).status_code == 404
    decided = httpx.post(f"{base}/v1/checkpoints/{cp['id']}/decision", headers=ZOE, json={"action": "approve"})
    assert decided.status_code == 404 and decided.json()["error"]["code"] == "not_found"
    classic = httpx.post(f"{base}/api/node-confirmation", headers=ZOE, json={
        "workflow_id": cp["workflow_run_id"], "node_id": "draft", "satisfied": True})
    assert classic.status_code == 202 and classic.json()["status"] == "parked"  # kept for zoe's own app only
    assert httpx.get(f"{base}/v1/runs/{cp['workflow_run_id']}", headers=ZOE).status_code == 404
    cli = e2e.hitl("show", cp["id"], reviewer_token="rv-zoe-token")
    assert cli.returncode == 1 and "among your apps" in cli.stderr
    bot_decides(e2e, {"checkpoint_id": cp["id"], "action": "approve", "actor": "zoe"})
    time.sleep(1)
    assert httpx.get(f"{base}/v1/checkpoints/{cp['id']}", headers={"Authorization": "Bearer rv-alice-token"}
                     ).json()["status"] == "open"
    e2e.decide(cp["id"], "approve")
    assert run.result(timeout=60)["data"]["status"] == "succeeded"


def bot_decides(e2e: E2E, decision: dict) -> None:
    import asyncio

    from shared.broker import Broker
    from shared.broker.signing import bot_headers
    from shared.topology import Names, build_topology

    names = Names(e2e.stack.env["HITL_NAMESPACE"])

    async def publish() -> None:
        broker = Broker(e2e.stack.env["HITL_RABBITMQ_URL"], name="test-bot", topology=build_topology(names))
        await broker.start(wait_s=15)
        body = json.dumps(decision).encode()
        await broker.publish(names.decisions, "", body, sign=False, message_id=str(uuid.uuid4()),
                             headers=bot_headers(DEMO_BOT["name"], DEMO_BOT["secret"], body))
        await broker.close()

    asyncio.run(publish())
