"""The ack policy of shared.broker.dispatch, with an in-memory stand-in for the broker."""
from __future__ import annotations

import asyncio

import pytest

from shared.broker import Delivery, PublishNotConfirmed, Reject, RetryLater
from shared.broker.dispatch import ACK, handle_delivery
from shared.topology import Names, build_topology


class FakeBroker:
    def __init__(self, confirm: bool = True) -> None:
        self.topology = build_topology(Names("t"))
        self.max_attempts = 3
        self.published: list[tuple[str, str, dict]] = []
        self.confirm = confirm

    async def run_handler(self, handler, delivery):
        await handler(delivery)

    async def publish(self, exchange, routing_key, body, *, headers=None, **_):
        if not self.confirm:
            raise PublishNotConfirmed("down")
        self.published.append((exchange, routing_key, headers))


class Consumer:
    def __init__(self, handler):
        self.handler = handler


def delivery(attempt: int = 1) -> Delivery:
    return Delivery("t.decisions", b"{}", "", "t.decisions", {"x-hitl-attempt": attempt}, "m1", None, None, False)


def settle(handler, broker=None, d=None):
    broker = broker or FakeBroker()
    return asyncio.run(handle_delivery(broker, Consumer(handler), d or delivery())), broker


async def ok(_):
    return None


async def reject(_):
    raise Reject("bad schema")


async def later(_):
    raise RetryLater("store down", delay_s=3)


async def crash(_):
    raise KeyError("boom")


def test_a_handler_that_returns_is_acked_with_nothing_published():
    result, broker = settle(ok)
    assert result is ACK and broker.published == []


def test_reject_goes_to_the_dlq_with_the_reason():
    result, broker = settle(reject)
    assert result is ACK
    [(exchange, key, headers)] = broker.published
    assert (exchange, key, headers["x-hitl-reason"]) == ("t.dlx", "t.decisions", "bad schema")


def test_retry_later_goes_to_the_smallest_delay_tier_that_fits_with_the_attempt_counted():
    result, broker = settle(later)
    [(exchange, key, headers)] = broker.published
    assert (exchange, key, headers["x-hitl-attempt"]) == ("", "t.decisions.delay.5s", 2)


def test_retries_past_the_limit_are_dead_lettered():
    _, broker = settle(later, d=delivery(attempt=3))
    [(exchange, _, headers)] = broker.published
    assert exchange == "t.dlx" and headers["x-hitl-reason"].startswith("gave up after 3 attempts")


def test_an_unexpected_error_is_dead_lettered_never_requeued():
    _, broker = settle(crash)
    assert broker.published[0][2]["x-hitl-reason"].startswith("unexpected KeyError")


@pytest.mark.parametrize("handler", [reject, later, crash])
def test_when_the_dlq_or_delay_publish_fails_the_delivery_stays_unacked(handler):
    result, _ = settle(handler, broker=FakeBroker(confirm=False))
    assert result is None
