"""A node list against the real RabbitMQ: the broker connects to the node that answers, moves to the
next one when its connection is lost (consumers re-attached, an unconfirmed publish sent again), and
a queue that already exists with other arguments is used as it is.

Two TCP proxies in front of the one local broker stand for two nodes: cutting one (and keeping it
shut) is, for the client, a node that died."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from demo.stack import free_port
from shared.broker import Broker
from shared.broker.calls import ChannelRefused
from shared.topology import Names, Queue, Topology, build_topology
from tests.faults.netfaults import TcpProxy

pytestmark = pytest.mark.integration


def on_port(url: str, port: int) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, _, hostpath = rest.rpartition("@")
    _hostport, slash, path = hostpath.partition("/")
    return f"{scheme}://{userinfo}@127.0.0.1:{port}{slash}{path}"


def one_queue(name: str) -> Topology:
    return Topology(exchanges=(), queues=(Queue(name, {"x-queue-type": "quorum"}),), bindings=(), dlx="")


def test_the_first_node_that_answers_is_used_when_others_are_down(rabbitmq_url):
    dead = on_port(rabbitmq_url, free_port())
    queue = f"nodes-{uuid.uuid4().hex[:8]}"

    async def scenario():
        broker = Broker(f"{dead},{dead.replace('127.0.0.1', 'localhost')},{rabbitmq_url}", name="test-nodes",
                        topology=one_queue(queue))
        await broker.start(wait_s=30)
        try:
            assert broker.node is not None and broker.node.endswith(rabbitmq_url.rpartition("@")[2])
            await broker.publish("", queue, b"{}", timeout_s=10)
            assert await broker.queue_depth(queue) == 1
        finally:
            await broker.delete_topology()
            await broker.close()

    asyncio.run(scenario())


def test_a_lost_node_is_left_for_the_next_with_consumers_and_unconfirmed_publishes_carried_over(rabbitmq_url):
    host_port = rabbitmq_url.rpartition("@")[2].split("/")[0]
    host, port = host_port.split(":")
    proxies = [TcpProxy(host, int(port)), TcpProxy(host, int(port))]
    by_port = {p.port: p for p in proxies}
    queue = f"nodes-{uuid.uuid4().hex[:8]}"

    async def scenario():
        broker = Broker(",".join(on_port(rabbitmq_url, p.port) for p in proxies), name="test-nodes",
                        topology=one_queue(queue))
        got: list[bytes] = []
        broker.consume(queue, lambda d: got.append(d.body))
        await broker.start(wait_s=30)
        try:
            await broker.publish("", queue, b"before", message_id="before", timeout_s=10)
            first = int(broker.node.rpartition(":")[2].split("/")[0])
            # The node dies while a publish is on its way: the publish is the caller's until confirmed.
            publishing = asyncio.create_task(broker.publish("", queue, b"during", message_id="during", timeout_s=30))
            await asyncio.to_thread(by_port[first].cut)  # and it stays down
            await asyncio.wait_for(publishing, 30)
            await broker.wait_ready(30)
            second = int(broker.node.rpartition(":")[2].split("/")[0])
            assert second != first and broker.connections_made == 2
            await broker.publish("", queue, b"after", message_id="after", timeout_s=10)
            for _ in range(200):
                if {b"before", b"during", b"after"} <= set(got):
                    break
                await asyncio.sleep(0.05)
            assert {b"before", b"during", b"after"} <= set(got), got
        finally:
            await broker.delete_topology()
            await broker.close()

    try:
        asyncio.run(scenario())
    finally:
        for p in proxies:
            p.close()


def test_an_existing_queue_declared_with_other_arguments_is_used_as_it_is(rabbitmq_url):
    """A process given one URL (RabbitMQ's replica count) and one given three (3 replicas) share the
    queues: whoever comes second must not be refused for `inequivalent arg`."""
    names = Names(f"t{uuid.uuid4().hex[:10]}")

    async def scenario():
        single = Broker(rabbitmq_url, name="test-one-url", topology=build_topology(names))
        await single.start(wait_s=30)
        three = Broker(rabbitmq_url, name="test-three-urls", topology=build_topology(names, group_size=3))
        try:
            await three.start(wait_s=30)
            await three.publish(names.commands, "checkpoint.requested", b"{}", timeout_s=10)
            assert await three.queue_depth(names.checkpoints_queue) == 1
        finally:
            await three.close()
            await single.delete_topology()
            await single.close()

    asyncio.run(scenario())


def test_events_reach_a_notifier_queue_only_once_a_notifier_has_declared_it(rabbitmq_url):
    """Without a notifier nothing is routed to its queue (it would grow unread for good); once one has
    started, its queue keeps the events that arrive while it is away."""
    names = Names(f"t{uuid.uuid4().hex[:10]}")

    async def scenario():
        core = Broker(rabbitmq_url, name="test-core", topology=build_topology(names))
        await core.start(wait_s=30)
        notifier = Broker(rabbitmq_url, name="test-notifier", topology=build_topology(names, with_notifier=True))
        try:
            await core.publish(names.events, "checkpoint.opened", b"{}", timeout_s=10)
            with pytest.raises(ChannelRefused):
                await core.queue_depth(names.notifier_queue)
            await notifier.start(wait_s=30)
            await notifier.close()  # the notifier is down from here on
            await core.publish(names.events, "checkpoint.opened", b"{}", timeout_s=10)
            await core.publish(names.events, "checkpoint.resolved", b"{}", timeout_s=10)
            assert await core.queue_depth(names.notifier_queue) == 2
        finally:
            await core.close()
            cleanup = Broker(rabbitmq_url, name="test-cleanup", topology=build_topology(names, with_notifier=True))
            await cleanup.start(wait_s=30)
            await cleanup.delete_topology()
            await cleanup.close()

    asyncio.run(scenario())


def test_a_stacks_cleanup_removes_the_queues_its_notifier_made(rabbitmq_url, tmp_path):
    from demo.stack import ProcessStack

    stack = ProcessStack(tmp_path, rabbitmq_url=rabbitmq_url)  # nothing started: only its namespace
    names = Names(stack.env["HITL_NAMESPACE"])

    async def declare_as_the_notifier():
        notifier = Broker(rabbitmq_url, name="test-notifier", topology=build_topology(names, with_notifier=True))
        await notifier.start(wait_s=30)
        await notifier.close()

    async def left():
        probe = Broker(rabbitmq_url, name="test-probe", topology=Topology((), (), (), ""))
        await probe.start(wait_s=30)
        try:
            found = []
            for q in build_topology(names, with_notifier=True).queues:
                try:
                    await probe.queue_depth(q.name)
                    found.append(q.name)
                except ChannelRefused:
                    pass
            return found
        finally:
            await probe.close()

    asyncio.run(declare_as_the_notifier())
    stack.delete_broker_objects()
    assert asyncio.run(left()) == []
