"""The ack policy of shared.broker.dispatch, on the in-memory broker (same dispatch code as RabbitMQ)."""
from __future__ import annotations

import pytest

from shared.broker import Reject, RetryLater
from shared.broker.memory import MemoryBroker
from shared.topology import Names, build_topology

NAMES = Names("t")


async def started(max_attempts: int = 3) -> MemoryBroker:
    broker = MemoryBroker(topology=build_topology(NAMES), max_attempts=max_attempts)
    await broker.start()
    return broker


async def run(handler, broker: MemoryBroker | None = None, headers: dict | None = None) -> MemoryBroker:
    broker = broker or await started()
    broker.consume(NAMES.decisions_queue, handler)
    await broker.publish("", NAMES.decisions_queue, b"{}", headers=headers or {}, message_id="m1")
    broker.published.clear()
    await broker.drain()
    return broker


async def ok(_):
    return None


async def reject(_):
    raise Reject("bad schema")


async def later(_):
    raise RetryLater("try again", delay_s=3)


async def store_down(_):
    raise RetryLater("store unavailable", delay_s=1, counted=False)


async def crash(_):
    raise KeyError("boom")


async def test_a_handler_that_returns_is_acked_with_nothing_published():
    broker = await run(ok)
    assert broker.published == [] and await broker.queue_depth(NAMES.decisions_queue) == 0


async def test_reject_goes_to_the_dlq_with_the_reason_and_the_routing_key():
    broker = await run(reject)
    [letter] = broker.messages(f"{NAMES.decisions_queue}.dlq")
    assert letter.headers["x-hitl-reason"] == "bad schema"
    assert letter.original_routing_key == NAMES.decisions_queue


async def test_retry_later_goes_to_the_smallest_delay_tier_that_fits_with_the_attempt_counted():
    broker = await run(later)
    [(exchange, key, _, headers)] = broker.published
    assert (exchange, key, headers["x-hitl-attempt"]) == ("", "t.decisions.delay.5s", 2)


async def test_a_delayed_message_comes_back_to_its_queue_after_the_tier():
    seen = []

    async def count(delivery):
        seen.append(delivery.attempt)
        if len(seen) < 2:
            raise RetryLater("once more", delay_s=1)

    broker = await run(count)
    assert seen == [1]
    await broker.advance(1.0)
    assert seen == [1, 2]


async def test_retries_past_the_limit_are_dead_lettered():
    broker = await run(later, headers={"x-hitl-attempt": 3})
    [letter] = broker.messages("t.decisions.dlq")
    assert letter.headers["x-hitl-reason"].startswith("gave up after 3 attempts")


async def test_a_store_outage_is_waited_out_without_using_up_attempts():
    broker = await run(store_down, headers={"x-hitl-attempt": 3})
    [(_, key, _, headers)] = broker.published
    assert key.startswith("t.decisions.delay.") and headers["x-hitl-attempt"] == 3 and headers["x-hitl-waits"] == 1
    for _ in range(12):  # far past max_attempts: still waiting, never dead-lettered
        await broker.advance(30)
    assert broker.messages("t.decisions.dlq") == []
    [(_, key, _, headers)] = broker.published[-1:]
    assert key == "t.decisions.delay.30s" and headers["x-hitl-waits"] == 13


async def test_an_unexpected_error_is_dead_lettered_never_requeued():
    broker = await run(crash)
    [letter] = broker.messages("t.decisions.dlq")
    assert letter.headers["x-hitl-reason"].startswith("unexpected KeyError")


@pytest.mark.parametrize("handler", [reject, later, crash])
async def test_when_the_dlq_or_delay_publish_fails_the_delivery_stays_unacked(handler):
    broker = await started()
    calls = []

    async def failing_once(delivery):
        calls.append(delivery.redelivered)
        if len(calls) == 1:
            broker.fail_next_publishes(1)  # the settle publish will not be confirmed
            await handler(delivery)

    await run(failing_once, broker)
    assert calls == [False, True]  # redelivered after the unconfirmed settle, then acked
