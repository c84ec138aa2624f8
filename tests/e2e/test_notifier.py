"""The notifier end to end: the real processes (simulator, ingest, decider, poller, notifier), the real
RabbitMQ and store, every platform's fake and a real SMTP server (STARTTLS + AUTH).

For each of the six channels: a Dify run pauses at its checkpoint → the card reaches the platform →
a reviewer presses a button (a signed Slack / Feishu / WeCom callback, or a signed link from
DingTalk, email, a webhook: the page, then its POST) → the run goes on → every card shows the
outcome. Then everything that must decide nothing, refused and recorded.

One stack for the whole module (the suite's time budget): each test uses its own checkpoints.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from demo.stack import ProcessStack
from shared.broker import Broker
from shared.models import CheckpointEvent
from shared.topology import Names, build_topology
from tests.e2e.harness import E2E, logs, wait_for
from tests.e2e.notifier_stack import (
    APP2_KEY,
    CHANNELS,
    LINK_SECRET,
    People,
    callbacks_of,
    notifications_of,
    notifier_env,
    notifier_idle,
    register_apps,
    running_fakes,
)
from tests.fakes import feishu as fake_feishu
from tests.fakes import slack as fake_slack
from tests.fakes import wecom as fake_wecom

pytestmark = pytest.mark.e2e
INTERNAL_KEY = "e2e-notifier-internal-key-0123456789abcdef"


class World:
    def __init__(self, stack: ProcessStack, e2e: E2E, fakes, people: People) -> None:
        self.stack, self.e2e, self.fakes, self.people = stack, e2e, fakes, people

    @property
    def database_url(self) -> str:
        return self.stack.env["HITL_DATABASE_URL"]

    def checkpoint(self, cid: str) -> dict:
        return httpx.get(f"{self.stack.ingest_url}/v1/checkpoints/{cid}",
                         headers={"Authorization": "Bearer rv-alice-token"}, timeout=10).json()

    def opened(self, topic: str) -> dict:
        def find():
            try:
                return next((c for c in self.e2e.open_checkpoints() if c["message"].endswith(f"about {topic}")), None)
            except httpx.HTTPError:
                return None
        return wait_for(find, 60, f"the checkpoint of {topic!r}")


@pytest.fixture(scope="module")
def world(tmp_path_factory, rabbitmq_url):
    workdir = tmp_path_factory.mktemp("notifier-e2e")
    with running_fakes() as fakes:
        probe = ProcessStack(workdir / "ports")  # the simulator's port, before the apps are configured
        env = notifier_env(fakes, f"http://127.0.0.1:{probe.ports['sim']}", HITL_INTERNAL_KEY=INTERNAL_KEY)
        with ProcessStack(workdir, rabbitmq_url=rabbitmq_url, ports=probe.ports, env=env) as stack:
            stack.start("notifier")
            e2e = E2E(stack)
            register_apps(e2e)
            yield World(stack, e2e, fakes, People(stack, fakes))
            e2e.close()


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_card_reaches_the_platform_its_button_decides_the_run_goes_on_and_every_card_shows_it(world, channel):
    topic = f"{channel} release {uuid.uuid4().hex[:6]}"
    run = world.e2e.start_run(topic)
    cid = world.opened(topic)["id"]
    for each in CHANNELS:  # routed to every channel
        wait_for(lambda each=each: world.people.card_arrived(each, cid), 30, f"the {each} card")

    answer = world.people.press(channel, cid, "approve")
    assert answer.status_code == 200, answer.text

    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"]["text"] == f"Draft 1 about {topic}."
    cp = world.checkpoint(cid)
    assert (cp["status"], cp["action"], cp["decided_by"], cp["decision_channel"]) == (
        "resolved", "approve", "alice", channel)
    for each in CHANNELS:  # decided in one place, updated everywhere: outcome, who, via which channel, when
        shown = wait_for(lambda each=each: world.people.outcome_shown(each, cid), 30, f"the {each} card updated")
        assert f"Approved by alice via {channel} at " in shown.replace("\\", ""), (each, shown)
    assert {(r["kind"], r["status"]) for r in notifications_of(world.database_url, cid)} == {
        ("card", "sent"), ("update", "sent")}


def test_a_slack_revise_opens_a_modal_and_its_text_reaches_the_workflow(world):
    topic = f"revise {uuid.uuid4().hex[:6]}"
    run = world.e2e.start_run(topic)
    cid = world.opened(topic)["id"]
    people = world.people
    payload = people.slack_payload(cid, "revise")
    payload["trigger_id"] = world.fakes.slack.issue_trigger()
    assert people.callback(fake_slack.interaction(payload)).status_code == 200
    view = wait_for(lambda: next((v for v in world.fakes.slack.views if cid in v["private_metadata"]), None),
                    10, "the modal")
    submitted = fake_slack.view_submission(view, "add the pricing table", view_id=f"V{uuid.uuid4().hex[:8]}")
    assert people.callback(fake_slack.interaction(submitted)).status_code == 200
    second = wait_for(lambda: next((c for c in world.e2e.open_checkpoints()
                                    if c["workflow_run_id"] == world.checkpoint(cid)["workflow_run_id"]
                                    and c["round"] == 2), None), 60, "round 2")
    assert second["node_output"].endswith("Revised after review: add the pricing table")
    assert people.press("webhook", second["id"], "approve").status_code == 200
    assert run.result(timeout=60)["data"]["status"] == "succeeded"


def test_what_must_decide_nothing_is_refused_and_recorded_then_the_assignee_decides_once(world):
    """A checkpoint of app demo2 is assigned to alice. Refused, nothing decided: a bad signature, a
    stale timestamp, a non-assignee (bob), an unknown chat user, a replayed callback, an expired
    link, a forged link. Then alice's email link decides, and using it again is refused."""
    people, fakes = world.people, world.fakes
    topic = f"guarded {uuid.uuid4().hex[:6]}"
    run = world.e2e.start_run(topic, key=APP2_KEY)
    cid = world.opened(topic)["id"]
    wait_for(lambda: all(people.card_arrived(c, cid) for c in CHANNELS), 30, "every card")

    forged = people.slack_click(cid, secret="not-the-signing-secret")
    stale = people.slack_click(cid, timestamp=time.time() - 600)
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "bad_signature")
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "stale_timestamp")

    assert people.slack_click(cid, user="U0BOB").status_code == 200  # bob is not an assignee
    told_bob = wait_for(lambda: next((e for e in fakes.slack.ephemerals if e["user"] == "U0BOB"), None), 15, "bob told")
    assert "bob is not among the assignees" in told_bob["text"]

    assert people.wecom_click(cid, user="mallory").status_code == 200  # a WeCom user who is no reviewer
    told = wait_for(lambda: next((t for t in fakes.wecom.texts if t["touser"] == "mallory"), None), 15, "mallory told")
    assert "not linked to a dify-hitl reviewer" in told["text"]["content"]

    replayed = people.feishu_request(cid, "abort", open_id="ou_bob")
    for _ in range(2):  # Feishu retries a callback it got no answer to: the same event id
        assert people.callback(replayed).status_code == 200

    expired = people.signer.make_link(cid, "alice", "approve", time.time() - 5, channel="email")
    assert people.http.post(expired, data={"token": expired.rsplit("/", 1)[1]}).status_code == 410
    bad = expired.rsplit("/", 1)[0] + "/" + expired.rsplit("/", 1)[1][:-4] + "AAAA"
    assert people.http.post(bad, data={"token": bad.rsplit("/", 1)[1]}).status_code == 403

    assert world.checkpoint(cid)["status"] == "open"
    recorded = wait_for(lambda: (lambda rows: rows if len(rows) >= 7 else None)(
        [(c["channel"], c["outcome"], c["code"]) for c in callbacks_of(world.database_url)
         if c["checkpoint_id"] in (cid, None) and c["outcome"] != "decided"]), 15, "the refusals recorded")
    for expected in [("slack", "refused", "bad_signature"), ("slack", "refused", "stale_timestamp"),
                     ("slack", "rejected", "not_assignee"), ("wecom", "refused", "unknown_user"),
                     ("feishu", "rejected", "not_assignee"), ("feishu", "replayed", "replayed"),
                     ("link", "refused", "link_expired"), ("link", "refused", "link_bad_signature")]:
        assert expected in recorded, (expected, recorded)

    link = wait_for(lambda: people.email_links(cid, to="alice@example.com"), 15, "alice's own email")["approve"]
    assert people.follow_link(link).status_code == 200
    assert run.result(timeout=60)["data"]["status"] == "succeeded"
    again = people.http.post(link, data={"token": link.rsplit("/", 1)[1]})
    assert again.status_code == 409 and "already used" in again.text
    cp = world.checkpoint(cid)
    assert (cp["decided_by"], cp["decision_channel"]) == ("alice", "email")
    decisions = [h for h in cp["history"] if h["kind"] == "decision"]
    assert [(h["actor"], h["channel"], h["outcome"]) for h in decisions] == [
        ("bob", "slack", "rejected"), ("bob", "feishu", "rejected"), ("alice", "email", "applied")]


def test_a_reminder_published_by_the_decider_renotifies_the_assignees(world):
    topic = f"reminded {uuid.uuid4().hex[:6]}"
    run = world.e2e.start_run(topic, key=APP2_KEY)
    cp = world.opened(topic)
    wait_for(lambda: world.people.slack_card(cp["id"]), 30, "the first card")
    names = Names(world.stack.env["HITL_NAMESPACE"])

    async def remind() -> None:  # as the decider's policy timers will: a signed checkpoint.reminder
        broker = Broker(world.stack.env["HITL_RABBITMQ_URL"], name="e2e-reminder", topology=build_topology(names),
                        signing_key=INTERNAL_KEY.encode())
        await broker.start(wait_s=15)
        try:
            event = CheckpointEvent(type="checkpoint.reminder", checkpoint=cp)
            await broker.publish(names.events, "checkpoint.reminder", event.to_bytes(), message_id=event.id)
        finally:
            await broker.close()

    asyncio.run(remind())
    reminder = wait_for(lambda: next((p for p in world.fakes.slack.posted if cp["id"] in json.dumps(p)
                                      and p["blocks"][0]["text"]["text"].startswith("Reminder: ")), None),
                        30, "the reminder card")
    assert reminder["channel"] == "C0REVIEW"
    wait_for(lambda: world.people.email_links(cp["id"], to="alice@example.com"), 15, "alice's email")
    assert world.people.press("slack", cp["id"], "approve").status_code == 200
    assert run.result(timeout=60)["data"]["status"] == "succeeded"


def test_no_secret_reaches_a_log_line_a_card_or_a_link(world):
    text = logs(world.stack) + json.dumps(world.fakes.receiver.accepted) + json.dumps(world.fakes.slack.posted)
    text += json.dumps([m for m in world.fakes.dingtalk.messages]) + json.dumps(world.fakes.wecom.cards)
    text += "".join(str(m.message) for m in world.fakes.smtp.messages)
    for secret in world.fakes.secrets():
        assert secret not in text, secret[:4]
    assert LINK_SECRET not in text and fake_feishu.ENCRYPT_KEY not in text and fake_wecom.TOKEN not in text


def test_platforms_failing_rate_limiting_or_hanging_are_retried_and_hold_up_no_other_channel(world):
    f = world.fakes
    wait_for(lambda: notifier_idle(world.database_url), 30, "the earlier tests' cards sent")
    f.slack.fail_next(500, times=2)
    f.feishu.fail_next(429, {"x-ogw-ratelimit-reset": "2"}, {"code": 99991400, "msg": "frequency limit"})
    f.wecom.hang_next(6)  # the adapter gives up after 3 s
    f.dingtalk.fail_next(503)
    failing_since = time.time()
    topic = f"stormy {uuid.uuid4().hex[:6]}"
    run = world.e2e.start_run(topic)
    cid = world.opened(topic)["id"]
    for each in CHANNELS:
        wait_for(lambda each=each: world.people.card_arrived(each, cid), 60, f"the {each} card")
    attempts = {r["channel"]: r["attempts"] for r in notifications_of(world.database_url, cid) if r["kind"] == "card"}
    assert attempts["webhook"] == 1 and attempts["email"] == 1, attempts  # sent at once: nobody waited for the others
    assert attempts["slack"] == 3 and attempts["dingtalk"] == 2, attempts
    assert attempts["feishu"] >= 2 and attempts["wecom"] >= 2, attempts
    feishu = [r.at for r in f.feishu.requests if r.at >= failing_since]
    assert feishu[1] - feishu[0] >= 2.0  # no call before Feishu's x-ogw-ratelimit-reset was over

    assert world.people.press("webhook", cid, "approve").status_code == 200
    assert run.result(timeout=60)["data"]["status"] == "succeeded"
    for each in CHANNELS:
        wait_for(lambda each=each: world.people.outcome_shown(each, cid), 30, f"the {each} card updated")
