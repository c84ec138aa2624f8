"""The console's event hub: one broker queue per process, fanned out to the browsers of reviewers
who may see the event's app; a slow browser or a broker reconnect turns into a `resync` (re-read
the page), never a stall. On the in-memory broker, events signed like our processes sign them."""
from __future__ import annotations

import asyncio
import json

from services.console.live import CLIENT_BUFFER, EventHub
from shared.access import ALL
from tests.conftest import make_settings, memory_broker, verifier

SETTINGS = make_settings("sqlite://")


async def hub_on_broker():
    broker = memory_broker(SETTINGS)
    hub = EventHub(broker, SETTINGS.names, keepalive_s=0.05, verifier=verifier(SETTINGS))
    await broker.start()
    return broker, hub


def drain(client: asyncio.Queue) -> list[dict]:
    return [client.get_nowait() for _ in range(client.qsize())]


async def emit(broker, routing_key: str, body: dict, sign: bool = True) -> None:
    await broker.publish(SETTINGS.names.events, routing_key, json.dumps(body).encode(), sign=sign)
    await broker.drain()


async def test_one_exclusive_auto_delete_queue_bound_to_every_event():
    broker, hub = await hub_on_broker()
    [consumer] = broker.consumers
    assert consumer.queue == hub.queue and hub.queue.startswith(f"{SETTINGS.namespace}.console.")
    assert consumer.exclusive and consumer.auto_ack and not consumer.declare.durable
    assert consumer.bindings == ((SETTINGS.names.events, "#"),)


async def test_every_browser_that_may_see_the_app_gets_the_event_and_a_resync_after_a_reconnect():
    broker, hub = await hub_on_broker()
    admin, demo, other = hub.subscribe(ALL), hub.subscribe(frozenset({"demo"})), hub.subscribe(frozenset({"other"}))
    await emit(broker, "run.status.succeeded", {"type": "run.status.succeeded",
                                                "run": {"app": "demo", "id": "r1", "status": "succeeded"}})
    await broker.publish(SETTINGS.names.events, "x", b"not json")  # ignored
    await broker.drain()
    await broker.reconnect_hooks[0]()
    seen = drain(admin)
    assert seen == drain(demo)
    assert [e["type"] for e in seen] == ["run.status.succeeded", "resync"] and seen[0]["run_id"] == "r1"
    assert [e["type"] for e in drain(other)] == ["resync"]  # another app's run is not even announced


async def test_an_unsigned_event_reaches_no_browser():
    broker, hub = await hub_on_broker()
    client = hub.subscribe(ALL)
    await emit(broker, "checkpoint.opened", {"type": "checkpoint.opened", "checkpoint": {"app": "demo", "id": "c"}},
               sign=False)
    assert drain(client) == []


async def test_a_browser_that_falls_behind_is_told_to_resync_and_streams_end_at_shutdown():
    _broker, hub = await hub_on_broker()
    slow = hub.subscribe(ALL)
    for i in range(CLIENT_BUFFER + 5):
        hub.publish({"type": "checkpoint.opened", "app": "demo", "checkpoint_id": str(i)})
    backlog = drain(slow)
    hub.unsubscribe(slow)
    chunks = []

    async def read():
        async for chunk in hub.stream(None, ALL):
            chunks.append(chunk)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.12)
    hub.publish({"type": "checkpoint.resolved", "app": "demo", "checkpoint_id": "c"})
    await asyncio.sleep(0.01)
    hub.close()
    await asyncio.wait_for(reader, 1)
    assert backlog[0] == {"type": "resync"} and len(backlog) < 10  # what it missed: re-read the page
    assert chunks[0].startswith("retry:") and chunks[1].startswith("event: hello")
    assert ": keepalive\n\n" in chunks
    assert 'event: hitl\ndata: {"type":"checkpoint.resolved","app":"demo","checkpoint_id":"c"}\n\n' in chunks
    assert hub.clients == {}


async def test_votes_and_claims_reach_the_open_pages_of_their_app_with_the_progress_and_the_claimer():
    broker, hub = await hub_on_broker()
    demo, other = hub.subscribe(frozenset({"demo"})), hub.subscribe(frozenset({"other"}))
    checkpoint = {"app": "demo", "id": "c1", "workflow_run_id": "r1", "status": "open", "claimed_by": None,
                  "tally": {"progress": "1 of 2 approved: alice", "approved": ["alice"]}, "node_output": "secret text"}
    await emit(broker, "checkpoint.voted", {"type": "checkpoint.voted", "checkpoint": checkpoint,
                                            "decision": {"actor": "alice", "action": "approve"}})
    await emit(broker, "checkpoint.claimed", {"type": "checkpoint.claimed",
                                              "checkpoint": {**checkpoint, "claimed_by": "bob"}})
    voted, claimed = drain(demo)
    assert voted["type"] == "checkpoint.voted" and voted["checkpoint_id"] == "c1"
    assert voted["progress"] == "1 of 2 approved: alice" and "secret text" not in json.dumps(voted)
    assert claimed["type"] == "checkpoint.claimed" and claimed["claimed_by"] == "bob"
    assert drain(other) == []
