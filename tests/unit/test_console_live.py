"""The console's event hub: one broker queue per process, fanned out to every browser; a slow browser
or a broker reconnect turns into a `resync` (re-read the page), never a stall."""
from __future__ import annotations

import asyncio
import json

from services.console.live import CLIENT_BUFFER, EventHub
from shared.broker import Delivery
from shared.topology import Names


class FakeBroker:
    ready = True

    def __init__(self) -> None:
        self.consumers, self.hooks = [], []

    def consume(self, queue, handler, **options) -> None:
        self.consumers.append((queue, handler, options))

    def on_reconnect(self, hook) -> None:
        self.hooks.append(hook)


def delivery(routing_key: str, body: dict) -> Delivery:
    return Delivery(queue="q", body=json.dumps(body).encode(), routing_key=routing_key, exchange="hitl.events",
                    headers={}, message_id=None, correlation_id=None, reply_to=None, redelivered=False)


def test_one_exclusive_auto_delete_queue_bound_to_every_event():
    broker = FakeBroker()
    hub = EventHub(broker, Names("ns"))
    queue, _handler, options = broker.consumers[0]
    assert queue == hub.queue and queue.startswith("ns.console.")
    assert options["exclusive"] and options["auto_ack"] and not options["declare"].durable
    assert options["bindings"] == (("ns.events", "#"),)


def test_every_connected_browser_gets_each_event_and_a_resync_after_a_reconnect():
    async def scenario():
        broker = FakeBroker()
        hub = EventHub(broker, Names("ns"))
        first, second = hub.subscribe(), hub.subscribe()
        handler = broker.consumers[0][1]
        await handler(delivery("run.status.succeeded", {"type": "run.status.succeeded",
                                                        "run": {"id": "r1", "status": "succeeded"}}))
        await handler(Delivery("q", b"not json", "x", "e", {}, None, None, None, False))  # ignored
        await broker.hooks[0]()
        return [first.get_nowait() for _ in range(first.qsize())], [second.get_nowait() for _ in range(second.qsize())]

    first, second = asyncio.run(scenario())
    assert first == second
    assert [e["type"] for e in first] == ["run.status.succeeded", "resync"] and first[0]["run_id"] == "r1"


def test_a_browser_that_falls_behind_is_told_to_resync_and_streams_end_at_shutdown():
    async def scenario():
        hub = EventHub(FakeBroker(), Names("ns"), keepalive_s=0.05)
        slow = hub.subscribe()
        for i in range(CLIENT_BUFFER + 5):
            hub.publish({"type": "checkpoint.opened", "checkpoint_id": str(i)})
        backlog = [slow.get_nowait() for _ in range(slow.qsize())]
        hub.unsubscribe(slow)
        chunks = []

        async def read():
            async for chunk in hub.stream(None):
                chunks.append(chunk)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.12)
        hub.publish({"type": "checkpoint.resolved", "checkpoint_id": "c"})
        await asyncio.sleep(0.01)
        hub.close()
        await asyncio.wait_for(reader, 1)
        return backlog, chunks, hub.clients

    backlog, chunks, clients = asyncio.run(scenario())
    assert backlog[0] == {"type": "resync"} and len(backlog) < 10  # what it missed: re-read the page
    assert chunks[0].startswith("retry:") and chunks[1].startswith("event: hello")
    assert ": keepalive\n\n" in chunks
    assert 'event: hitl\ndata: {"type":"checkpoint.resolved","checkpoint_id":"c"}\n\n' in chunks
    assert clients == set()
