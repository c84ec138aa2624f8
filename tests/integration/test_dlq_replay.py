"""`hitl dlq` against the real RabbitMQ: the broker's lease and peek (nothing taken by looking, nothing
lost by a replay), and the operator's story — a decision poisoned into the DLQ is listed, replayed with
the real CLI once its cause is fixed, and applied: the held Dify call gets it."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.broker import Broker
from shared.broker.lease import RENEW_AT, delivery_count
from shared.broker.signing import bot_headers
from shared.settings import BotConfig
from shared.topology import build_topology, dlq_name
from tests.conftest import TEST_KEY, make_settings
from tests.integration.stack import Stack, run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OPS_BOT, OPS_SECRET = "opsbot", "ops-bot-signing-secret-0123"


async def depth_settles(broker: Broker, queue: str, expected: int) -> int:
    """The queue's depth once the returns of a lease have been applied (a quorum queue does it async)."""
    depth = -1
    for _ in range(50):
        depth = await broker.queue_depth(queue)
        if depth == expected:
            break
        await asyncio.sleep(0.05)
    return depth


async def fresh_broker(settings) -> Broker:
    broker = Broker(settings.rabbitmq_url, name="test-lease", topology=build_topology(settings.names),
                    signing_key=TEST_KEY)
    await broker.start()
    return broker


def test_peek_takes_nothing_and_a_lease_removes_only_what_is_acked(sqlite_url, rabbitmq_url):
    settings = make_settings(sqlite_url, rabbitmq_url)
    dlq = dlq_name(settings.names.decisions_queue)

    async def scenario():
        broker = await fresh_broker(settings)
        try:
            for i in range(4):
                await broker.publish("", dlq, f"m{i}".encode(), message_id=f"m{i}")
            assert [d.message_id for d in await broker.peek(dlq)] == ["m0", "m1", "m2", "m3"]
            assert await depth_settles(broker, dlq, 4) == 4
            assert len(await broker.peek(dlq, 2)) == 2
            assert await depth_settles(broker, dlq, 4) == 4
            async with broker.lease(dlq, 10) as held:
                acked = held.deliveries[1].message_id
                await held.ack(held.deliveries[1])
            assert await depth_settles(broker, dlq, 3) == 3
            with pytest.raises(RuntimeError):
                async with broker.lease(dlq, 10) as held:
                    assert len(held.deliveries) == 3
                    dead = held.deliveries[0].message_id
                    await held.ack(held.deliveries[0])
                    raise RuntimeError("the holder dies")
            assert await depth_settles(broker, dlq, 2) == 2
            left = sorted(d.message_id for d in await broker.peek(dlq))
            assert left == sorted({"m0", "m1", "m2", "m3"} - {acked, dead})
        finally:
            await broker.delete_topology()
            await broker.close()

    run(scenario())


def test_peeking_often_renews_a_message_instead_of_wearing_out_its_delivery_limit(sqlite_url, rabbitmq_url):
    settings = make_settings(sqlite_url, rabbitmq_url)
    dlq = dlq_name(settings.names.decisions_queue)

    async def scenario():
        broker = await fresh_broker(settings)
        try:
            await broker.publish("", dlq, b"letter", message_id="only", headers={"x-hitl-reason": "why"})
            counts = []
            for _ in range(RENEW_AT + 3):
                await depth_settles(broker, dlq, 1)  # the last peek's return applied
                (seen,) = await broker.peek(dlq)
                counts.append(delivery_count(seen))
            assert max(counts) == RENEW_AT  # renewed there: a fresh copy, its count back at 0
            assert counts[RENEW_AT + 1] == 0
            assert await depth_settles(broker, dlq, 1) == 1
            (letter,) = await broker.peek(dlq)
            assert letter.message_id == "only" and letter.body == b"letter"
            assert letter.headers["x-hitl-reason"] == "why" and "x-hitl-sig" in letter.headers
        finally:
            await broker.delete_topology()
            await broker.close()

    run(scenario())


def hitl(settings, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HITL_RABBITMQ_URL": settings.rabbitmq_url, "HITL_NAMESPACE": settings.namespace,
           "HITL_INTERNAL_KEY": TEST_KEY.decode(), "HITL_DATABASE_URL": settings.database_url, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_a_poisoned_decision_is_listed_replayed_after_the_fix_and_applied(sqlite_url, rabbitmq_url):
    settings = make_settings(sqlite_url, rabbitmq_url)  # without the ops bot: its decisions are refused
    dlq = dlq_name(settings.names.decisions_queue)

    async def scenario():
        async with Stack(settings) as s:
            run_id = str(uuid.uuid4())
            held = asyncio.create_task(s.checkpoint_call({"workflow_run_id": run_id, "node_id": "draft",
                                                          "node_output": "Draft 1", "read_timeout_s": 300}))
            cp = await s.wait_open(run_id)
            decision = {"checkpoint_id": cp["id"], "action": "approve", "actor": "alice", "id": str(uuid.uuid4())}
            raw = json.dumps(decision).encode()
            await s.tap.publish(settings.names.decisions, "ops", raw, message_id=decision["id"], sign=False,
                                headers=bot_headers(OPS_BOT, OPS_SECRET, raw))
            for _ in range(100):
                if await s.tap.queue_depth(dlq):
                    break
                await asyncio.sleep(0.1)

            for _ in range(2):  # listing takes nothing
                listed = await asyncio.to_thread(hitl, settings, "dlq", "list", "--json")
                assert listed.returncode == 0, listed.stderr
                queues = {q["dlq"]: q for q in json.loads(listed.stdout)["queues"]}
                assert queues[dlq]["count"] == 1
            (letter,) = queues[dlq]["letters"]
            assert letter["message_id"] == decision["id"] and letter["routing_key"] == "ops"
            assert letter["reason"].startswith("unknown bot 'opsbot'")
            assert letter["queue"] == settings.names.decisions_queue
            assert cp["id"] in letter["preview"] and letter["dead_at"]
            text = await asyncio.to_thread(hitl, settings, "dlq", "list", "--queue", "decisions")
            assert f"{dlq}  1 letter" in text.stdout and "reason  unknown bot 'opsbot'" in text.stdout

            dry = await asyncio.to_thread(hitl, settings, "dlq", "replay", "--queue", "decisions", "--all", "--dry-run")
            assert dry.returncode == 0 and f"would replay {decision['id']}" in dry.stdout
            assert await s.tap.queue_depth(dlq) == 1

            # the fix: the bot is configured (the decider restarts with it)
            await s.stop_decider()
            s.settings = make_settings(sqlite_url, rabbitmq_url, namespace=settings.namespace, bots=[
                *settings.bots, BotConfig(name=OPS_BOT, secret=OPS_SECRET, acts_for=["*"], apps=["demo"])])
            await s.start_decider()

            replayed = await asyncio.to_thread(hitl, settings, "dlq", "replay", "--queue", "decisions",
                                               "--id", decision["id"])
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            assert f"replayed {decision['id']}" in replayed.stdout and "1 replayed" in replayed.stdout
            answer = await asyncio.wait_for(held, 60)
            assert answer.status_code == 200 and answer.json()["action"] == "approve"
            shown = (await s.get(f"/v1/checkpoints/{cp['id']}")).json()
            assert shown["status"] == "resolved" and shown["decided_by"] == "alice"
            assert shown["decision_channel"] == "bot:opsbot"
            assert await s.tap.queue_depth(dlq) == 0

    run(scenario())
