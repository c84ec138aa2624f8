"""The decider's wiring on the in-memory broker: declared handlers, who may send what, the app in
every lookup, store outages waited out. The same behaviours run on RabbitMQ in tests/integration."""
from __future__ import annotations

import json
import uuid

import pytest

from services.decider.service import DeciderService
from shared.broker.signing import BOT_HEADER, BOT_SIGNATURE_HEADER, signature
from shared.models import CheckpointRequested, DecisionSubmitted, RunEnded
from shared.settings import AppConfig, BotConfig
from shared.store import Database
from shared.store import checkpoints as store
from shared.topology import CHECKPOINT_REQUESTED, RUN_ENDED
from tests.conftest import make_settings, memory_broker, verifier

BOT_SECRET = "slack-bot-secret-0123456789"


@pytest.fixture
async def decider(sqlite_url):
    settings = make_settings(sqlite_url, apps=[AppConfig(name="demo", checkpoint_token="cp-demo-token-0001"),
                                               AppConfig(name="other", checkpoint_token="cp-other-token-001")],
                             bots=[BotConfig(name="slackbot", secret=BOT_SECRET, acts_for=["alice"], apps=["demo"])])
    db = Database(sqlite_url)
    db.migrate()
    broker = memory_broker(settings)
    service = DeciderService(settings, db, broker, verifier(settings))
    await broker.start()
    yield service
    await broker.close()
    db.dispose()


def names(service):
    return service.settings.names


async def open_checkpoint(service, app="demo", run_id=None, **extra) -> dict:
    req = CheckpointRequested(app=app, workflow_run_id=run_id or str(uuid.uuid4()), node_id="draft",
                              node_output="text", timeout_s=300, max_rounds=3, round=1, **extra)
    await service.broker.publish(names(service).commands, CHECKPOINT_REQUESTED, req.to_bytes(), message_id=req.id)
    await service.broker.drain()
    with service.db.read() as conn:
        cp = store.by_key(conn, app, req.workflow_run_id, "draft", 1)
    assert cp is not None
    return cp


def dlq(service, queue: str) -> list[str]:
    return [d.headers["x-hitl-reason"] for d in service.broker.messages(f"{queue}.dlq")]


async def bot_decision(service, body: dict, bot="slackbot", secret=BOT_SECRET) -> None:
    raw = json.dumps(body).encode()
    await service.broker.publish(names(service).decisions, "", raw, sign=False,
                                 headers={BOT_HEADER: bot, BOT_SIGNATURE_HEADER: signature(secret.encode(), raw)})
    await service.broker.drain()


def status_of(service, checkpoint_id):
    with service.db.read() as conn:
        return store.get(conn, checkpoint_id)


async def test_a_signed_request_opens_a_checkpoint_and_announces_it(decider):
    cp = await open_checkpoint(decider)
    assert cp["status"] == "open"
    assert [key for _, key, _, _ in decider.broker.published if key == "checkpoint.opened"] == ["checkpoint.opened"]


async def test_an_unsigned_request_goes_to_the_dlq_and_opens_nothing(decider):
    req = CheckpointRequested(app="demo", workflow_run_id="r1", node_id="draft", timeout_s=300, max_rounds=3)
    await decider.broker.publish(names(decider).commands, CHECKPOINT_REQUESTED, req.to_bytes(), sign=False)
    await decider.broker.drain()
    assert dlq(decider, names(decider).checkpoints_queue) == [
        "unsigned message (only dify-hitl's own processes may publish here) (checkpoint.requested)"]
    with decider.db.read() as conn:
        assert store.listing(conn)[1] == 0


async def test_a_bot_decides_for_a_reviewer_it_acts_for_and_the_channel_is_the_one_observed(decider):
    cp = await open_checkpoint(decider)
    await bot_decision(decider, {"checkpoint_id": cp["id"], "action": "approve", "actor": "alice",
                                 "channel": "console"})
    row = status_of(decider, cp["id"])
    assert (row["status"], row["decided_by"], row["decision_channel"]) == ("resolved", "alice", "bot:slackbot")


@pytest.mark.parametrize("body,bot,secret,reason", [
    ({"actor": "bob"}, "slackbot", BOT_SECRET, "bot slackbot: bot 'slackbot' may not act for 'bob'"),
    ({"actor": "group:legal"}, "slackbot", BOT_SECRET, "bot slackbot: 'group:legal' is not a reviewer"),
    ({"actor": "alice"}, "slackbot", "not-the-secret-0123", "bad signature for bot 'slackbot'"),
    ({"actor": "alice"}, "ghost", BOT_SECRET, "unknown bot 'ghost'"),
])
async def test_a_bot_that_may_not_decide_is_dead_lettered_and_nothing_is_decided(decider, body, bot, secret, reason):
    cp = await open_checkpoint(decider)
    await bot_decision(decider, {"checkpoint_id": cp["id"], "action": "approve", **body}, bot=bot, secret=secret)
    assert status_of(decider, cp["id"])["status"] == "open"
    [why] = dlq(decider, names(decider).decisions_queue)
    assert why.startswith(reason)


async def test_a_bot_cannot_reach_an_app_outside_its_grant(decider):
    cp = await open_checkpoint(decider, app="other")
    await bot_decision(decider, {"checkpoint_id": cp["id"], "action": "approve", "actor": "alice"})
    assert status_of(decider, cp["id"])["status"] == "open"
    assert dlq(decider, names(decider).decisions_queue)[0].startswith("not_found")


async def test_a_run_that_ended_cancels_only_the_checkpoints_of_its_own_app(decider):
    run_id = str(uuid.uuid4())
    mine, theirs = await open_checkpoint(decider, "demo", run_id), await open_checkpoint(decider, "other", run_id)
    ended = RunEnded(app="other", workflow_run_id=run_id, status="stopped")
    await decider.broker.publish(names(decider).commands, RUN_ENDED, ended.to_bytes())
    await decider.broker.drain()
    assert status_of(decider, mine["id"])["status"] == "open"
    assert status_of(decider, theirs["id"])["status"] == "cancelled"


async def test_a_retried_run_ended_comes_back_to_its_own_handler(decider, monkeypatch):
    cp = await open_checkpoint(decider)
    calls = []
    real = decider.timers.cancel_run

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            from shared.broker import RetryLater
            raise RetryLater("not yet")
        return real(*args)

    monkeypatch.setattr(decider.timers, "cancel_run", flaky)
    ended = RunEnded(app="demo", workflow_run_id=cp["workflow_run_id"], status="failed")
    await decider.broker.publish(names(decider).commands, RUN_ENDED, ended.to_bytes())
    await decider.broker.drain()
    await decider.broker.advance(1)  # back from the delay queue, routed by its original routing key
    assert len(calls) == 2 and status_of(decider, cp["id"])["status"] == "cancelled"


async def test_a_store_outage_keeps_the_decision_waiting_until_the_store_is_back(decider, monkeypatch):
    cp = await open_checkpoint(decider)
    from shared.store.errors import StoreUnavailable
    real = decider.logic.on_decision
    down = {"on": True}

    def on_decision(*args):
        if down["on"]:
            raise StoreUnavailable("OperationalError: database or disk is full")
        return real(*args)

    monkeypatch.setattr(decider.logic, "on_decision", on_decision)
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="alice", channel="api")
    await decider.broker.publish(names(decider).decisions, "", dec.to_bytes())
    await decider.broker.drain()
    for _ in range(10):  # longer than every attempt budget: it keeps waiting, never dead-lettered
        await decider.broker.advance(30)
    assert dlq(decider, names(decider).decisions_queue) == [] and status_of(decider, cp["id"])["status"] == "open"
    down["on"] = False
    await decider.broker.advance(30)
    assert status_of(decider, cp["id"])["status"] == "resolved"


async def test_a_body_the_model_refuses_is_dead_lettered_with_the_reason(decider):
    await decider.broker.publish(names(decider).decisions, "", b'{"action": "approve", "actor": "a\\u0000b"}')
    await decider.broker.drain()
    [why] = dlq(decider, names(decider).decisions_queue)
    assert why.startswith("invalid decision.submitted: actor: Value error, contains a NUL character")


async def test_groups_our_console_vouches_for_count_and_a_bots_do_not(decider):
    from shared.settings import GroupConfig

    decider.settings.groups.append(GroupConfig(name="sso-editors", apps=["demo"]))
    cp = await open_checkpoint(decider, assignees=["group:sso-editors"])
    await bot_decision(decider, {"checkpoint_id": cp["id"], "action": "approve", "actor": "alice",
                                 "actor_groups": ["sso-editors"]})
    assert status_of(decider, cp["id"])["status"] == "open"  # a bot's claim of groups is ignored
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="zoe", channel="console",
                            actor_groups=["sso-editors"])  # signed in with the identity provider only
    await decider.broker.publish(names(decider).decisions, "", dec.to_bytes())
    await decider.broker.drain()
    row = status_of(decider, cp["id"])
    assert (row["status"], row["decided_by"]) == ("resolved", "zoe")


async def test_a_sweep_while_the_store_refuses_writes_leaves_its_health_down(decider):
    """Nothing due, an anchor due: no write transaction that changes nothing (it would commit even on a
    full disk and make /readyz say ready during the outage); the anchor waits for the store."""
    decider.db.health.failed(OSError("database or disk is full"))
    decider._last_anchor = float("-inf")
    await decider.sweep()
    assert decider.db.health.up is False
    assert decider._last_anchor == float("-inf")  # still due: written once the store takes writes


async def test_deliveries_that_arrive_together_share_a_transaction_and_each_is_answered(decider):
    from shared import metrics

    before = (metrics.store_batches._value.get(), metrics.store_batched_deliveries._value.get())
    reqs = [CheckpointRequested(app="demo", workflow_run_id=f"batch-{i}", node_id="draft", node_output="text",
                                timeout_s=300, max_rounds=3, round=1) for i in range(20)]
    for req in reqs:
        await decider.broker.publish(names(decider).commands, CHECKPOINT_REQUESTED, req.to_bytes(), message_id=req.id)
    await decider.broker.drain()
    batches = metrics.store_batches._value.get() - before[0]
    deliveries = metrics.store_batched_deliveries._value.get() - before[1]
    assert deliveries == 20 and batches < 20  # fewer transactions than deliveries
    opened = [key for _, key, _, _ in decider.broker.published if key == "checkpoint.opened"]
    assert len(opened) == 20
    with decider.db.read() as conn:
        assert all(store.by_key(conn, "demo", r.workflow_run_id, "draft", 1) for r in reqs)


async def test_a_refused_bot_decision_in_a_batch_still_goes_to_the_dlq_alone(decider):
    cp = await open_checkpoint(decider)
    await bot_decision(decider, {"checkpoint_id": cp["id"], "action": "approve", "actor": "mallory"})
    assert any("bot slackbot" in reason for reason in dlq(decider, names(decider).decisions_queue))
    assert status_of(decider, cp["id"])["status"] == "open"
