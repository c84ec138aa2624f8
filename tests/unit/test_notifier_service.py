"""The notifier's wiring on the in-memory broker, with the decider beside it and the platform fakes:
cards planned once per (checkpoint, recipient, event), sent, updated when the checkpoint closes
anywhere; a failing platform retried on its own, past its budget dead-lettered with the reason."""
from __future__ import annotations

import json

from prometheus_client import REGISTRY

from shared.models import DecisionSubmitted
from tests.fakes.slack import FakeSlack
from tests.unit.notifier_support import world


def slack_posts(slack: FakeSlack) -> list[dict]:
    """The cards Slack accepted (its request log has the refused calls too)."""
    return slack.posted


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def decide(w, cp_id: str, actor: str = "alice", action: str = "approve", **extra) -> None:
    dec = DecisionSubmitted(checkpoint_id=cp_id, action=action, actor=actor, channel="console", **extra)
    await w.broker.publish(w.names.decisions, "", dec.to_bytes(), message_id=dec.id)
    await w.broker.drain()


async def test_an_opened_checkpoint_reaches_every_recipient_once_even_when_the_event_is_redelivered(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice", "group:leads"])
        # alice, bob and carol by direct message; the webhook with links bound to alice; dave is no assignee
        assert sorted(p["channel"] for p in slack_posts(w.slack)) == ["U0ALICE", "U0BOB", "U0CAROL"]
        (hook,) = w.receiver.accepted
        assert hook["type"] == "checkpoint.opened" and hook["checkpoint"]["id"] == cp["id"]
        assert {a["action"] for a in hook["actions"]} == {"approve", "revise", "edit", "abort"}
        assert all(a["url"].startswith("http://notifier.test/decide/") for a in hook["actions"])
        assert {r["status"] for r in w.rows(cp["id"])} == {"sent"}

        await w.event("checkpoint.opened", cp)  # the decider re-announces it (a redelivered request)
        assert len(slack_posts(w.slack)) == 3 and len(w.receiver.accepted) == 1
        assert len(w.rows(cp["id"])) == 4


async def test_without_assignees_the_group_gets_the_card(sqlite_url):
    async with world(sqlite_url) as w:
        await w.open()
        assert [p["channel"] for p in slack_posts(w.slack)] == ["C0REVIEW"]


async def test_a_resolution_from_anywhere_updates_every_card_with_who_when_and_via_which_channel(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice", "bob"])
        await decide(w, cp["id"], "bob", "abort", reason="not now")
        updates = [c.json for c in w.slack.calls("/api/chat.update")]
        assert len(updates) == 2
        for body in updates:
            kinds = [b["type"] for b in body["blocks"]]
            assert "actions" not in kinds  # the buttons are gone
            assert "Aborted by bob via console at" in body["blocks"][-1]["elements"][0]["text"]
        resolved = w.receiver.accepted[-1]
        assert resolved["type"] == "checkpoint.resolved" and resolved["actions"] == []
        assert resolved["checkpoint"]["outcome"].startswith("Aborted by bob via console")
        assert sorted((r["kind"], r["status"]) for r in w.rows(cp["id"])) == [
            ("card", "sent"), ("card", "sent"), ("card", "sent"), ("update", "sent"), ("update", "sent"),
            ("update", "sent")]
        await w.event("checkpoint.resolved", w.checkpoint(cp["id"]))  # redelivered: no second update
        assert len(w.slack.calls("/api/chat.update")) == 2


async def test_a_card_whose_checkpoint_closed_before_its_turn_is_not_sent(sqlite_url):
    async with world(sqlite_url) as w:
        w.slack.fail_next(503, times=3)  # every slack card waits for a retry
        cp = await w.open(assignees=["alice"])
        await decide(w, cp["id"], "alice")
        await w.broker.advance(5)
        assert slack_posts(w.slack) == []
        statuses = {(r["channel"], r["kind"]): r["status"] for r in w.rows(cp["id"])}
        assert statuses[("slack", "card")] == "skipped"


async def test_a_rate_limited_platform_waits_for_retry_after_while_the_other_channels_go_on(sqlite_url):
    async with world(sqlite_url) as w:
        retried = sample("hitl_notifications_retried_total", channel="slack", reason="rate_limited")
        w.slack.fail_next(429, {"Retry-After": "20"}, {"ok": False, "error": "ratelimited"})
        cp = await w.open()
        assert len(w.receiver.accepted) == 1  # the webhook did not wait for slack
        assert slack_posts(w.slack) == []
        assert sample("hitl_notifications_retried_total", channel="slack", reason="rate_limited") == retried + 1
        assert sample("hitl_notifier_channel_paused", channel="slack") == 1
        await w.broker.advance(30)  # back from the delay queue, but the 20 s pause is not over yet
        assert slack_posts(w.slack) == [] and len(w.slack.calls("/api/chat.postMessage")) == 1
        w.clock.now += 21
        await w.broker.advance(30)
        assert [p["channel"] for p in slack_posts(w.slack)] == ["C0REVIEW"]
        assert {r["status"] for r in w.rows(cp["id"])} == {"sent"}
        assert sample("hitl_notifier_channel_paused", channel="slack") == 0


async def test_past_its_retry_budget_a_card_goes_to_the_dlq_with_the_reason_and_a_metric(sqlite_url):
    async with world(sqlite_url) as w:
        before = sample("hitl_notifications_failed_total", channel="slack", reason="gave_up")
        w.slack.fail_next(500, times=10)
        cp = await w.open()
        for _ in range(4):
            w.clock.now += 120
            await w.broker.advance(30)
        assert w.dlq(w.names.notifications_queue) == [
            "gave up after 3 attempts: platform_error: chat.postMessage answered HTTP 500"]
        assert sample("hitl_notifications_failed_total", channel="slack", reason="gave_up") == before + 1
        slack_row = next(r for r in w.rows(cp["id"]) if r["channel"] == "slack")
        assert slack_row["status"] == "failed" and slack_row["attempts"] == 3
        assert len(w.receiver.accepted) == 1


async def test_a_permanent_refusal_goes_to_the_dlq_at_once(sqlite_url):
    def rules(receiver):
        return [{"app": "demo", "targets": [{"channel": "slack", "to": "C0UNKNOWN"}]}]

    async with world(sqlite_url, rules=rules) as w:
        cp = await w.open()
        assert w.dlq(w.names.notifications_queue) == [
            "slack refused the card: channel_not_found: chat.postMessage answered ok=false"]
        assert w.rows(cp["id"])[0]["status"] == "failed"


async def test_a_hanging_platform_times_out_and_is_retried(sqlite_url):
    async with world(sqlite_url) as w:
        w.slack.hang_next(4)  # the adapter's timeout is 2 s
        cp = await w.open()
        assert len(w.receiver.accepted) == 1 and slack_posts(w.slack) == []
        await w.broker.advance(5)
        assert [p["channel"] for p in slack_posts(w.slack)] == ["C0REVIEW"]
        assert next(r for r in w.rows(cp["id"]) if r["channel"] == "slack")["attempts"] == 2


async def test_reminders_renotify_the_current_assignees_once_each_and_the_deadline_warning_once(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        reminder = await w.event("checkpoint.reminder", cp)
        await w.broker.publish(w.names.events, "checkpoint.reminder", reminder.to_bytes())  # redelivered
        await w.broker.drain()
        await w.event("checkpoint.deadline_near", cp)
        await w.event("checkpoint.deadline_near", cp)
        titles = ["Review needed: draft", "Reminder: Review needed: draft", "Deadline soon: Review needed: draft"]
        assert [p["blocks"][0]["text"]["text"] for p in slack_posts(w.slack)] == titles
        assert [h["checkpoint"]["title"] for h in w.receiver.accepted] == titles
        await decide(w, cp["id"])
        assert len(w.slack.calls("/api/chat.update")) == 3  # every card the reviewer got shows the outcome
        assert [h["type"] for h in w.receiver.accepted].count("checkpoint.resolved") == 1  # one outcome per receiver


async def test_an_escalation_notifies_the_added_assignees_only(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        escalated = {**cp, "assignees": ["alice", "group:leads"]}
        await w.event("checkpoint.escalated", escalated, decision={"add_assignees": ["group:leads"]})
        assert [p["channel"] for p in slack_posts(w.slack)] == ["U0ALICE", "U0BOB", "U0CAROL"]
        assert len(w.receiver.accepted) == 1


async def test_a_checkpoint_resolved_at_open_asks_nobody(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open()
        done = {**cp, "status": "resolved", "action": "approve", "decided_by": "alice"}
        other = {**done, "id": "00000000-0000-0000-0000-000000000001"}
        await w.event("checkpoint.opened", other)
        assert w.rows(other["id"]) == []


async def test_an_unsigned_event_is_dead_lettered_and_plans_nothing(sqlite_url):
    async with world(sqlite_url) as w:
        body = json.dumps({"type": "checkpoint.opened", "checkpoint": {"id": "x", "app": "demo", "status": "open"}})
        await w.broker.publish(w.names.events, "checkpoint.opened", body.encode(), sign=False)
        await w.broker.drain()
        assert w.dlq(w.names.notifier_queue)[0].startswith("unsigned message")
        assert w.rows("x") == []
