"""The broker's lease and peek (shared/broker/lease.py) on the in-memory broker: held messages leave
their queue only when acked; the others go back in order, also when the holder fails. The same
behaviours run on RabbitMQ in tests/integration/test_dlq_replay.py."""
from __future__ import annotations

import pytest

from shared.broker.lease import delivery_count, fresh_headers
from shared.broker.types import Delivery
from shared.topology import dlq_name
from tests.conftest import make_settings, memory_broker


@pytest.fixture
async def broker(sqlite_url):
    settings = make_settings(sqlite_url)
    b = memory_broker(settings)
    await b.start()
    b.dlq = dlq_name(settings.names.decisions_queue)  # a queue nobody consumes, as a DLQ
    for i in range(4):
        await b.publish("", b.dlq, f"m{i}".encode(), message_id=f"m{i}")
    yield b
    await b.close()


def ids(broker) -> list[str]:
    return [d.message_id for d in broker.messages(broker.dlq)]


async def test_peek_leaves_every_message_in_place_in_order(broker):
    assert [d.message_id for d in await broker.peek(broker.dlq, 3)] == ["m0", "m1", "m2"]
    assert [d.message_id for d in await broker.peek(broker.dlq)] == ["m0", "m1", "m2", "m3"]
    assert ids(broker) == ["m0", "m1", "m2", "m3"]


async def test_only_acked_messages_leave_and_the_rest_go_back_in_order(broker):
    async with broker.lease(broker.dlq, 3) as held:
        assert [d.message_id for d in held.deliveries] == ["m0", "m1", "m2"]
        await held.ack(held.deliveries[1])
    assert ids(broker) == ["m0", "m2", "m3"]


async def test_a_holder_that_fails_leaves_every_unacked_message_in_its_queue(broker):
    with pytest.raises(RuntimeError):
        async with broker.lease(broker.dlq, 10) as held:
            await held.ack(held.deliveries[0])
            raise RuntimeError("crash")
    assert ids(broker) == ["m1", "m2", "m3"]


async def test_a_lease_on_a_missing_queue_is_refused(broker):
    from shared.broker import BrokerUnavailable

    with pytest.raises(BrokerUnavailable):
        async with broker.lease("no-such-queue", 1):
            pass


def test_the_brokers_delivery_count_is_read_and_never_republished():
    d = Delivery("q", b"x", "k", "", {"x-delivery-count": 12, "x-hitl-sig": "v1=ab"}, "m", None, None, True)
    assert delivery_count(d) == 12 and fresh_headers(d) == {"x-hitl-sig": "v1=ab"}
    assert delivery_count(Delivery("q", b"x", "k", "", {}, "m", None, None, False)) == 0
