"""Holding a queue's messages without taking them yet: what `peek` and the DLQ replay (`hitl dlq`)
stand on. A lease fetches up to N messages unacknowledged (RabbitMQ: basic.get without auto-ack on a
channel of its own); a message leaves the queue only when the holder `ack`s it — after its copy was
confirmed elsewhere —, and every message not acked goes back when the lease ends, or when the
process dies (the broker returns unacked messages). A crash mid-way therefore duplicates at worst
and never loses. A quorum queue applies returns asynchronously and may put them behind messages
that were never fetched: the order of a queue that was leased in part is not kept, and a count read
in the same instant may not include them yet.

Quorum queues count each return as a delivery (`x-delivery-count`); RabbitMQ 4.0–4.2 drop a message
past a delivery limit (default 20) when the queue has no dead-letter target — as a DLQ has not.
`Broker.peek` therefore renews a message whose count reaches RENEW_AT: a fresh copy is published
(confirmed) and only then the worn one acked.
"""
from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pika.spec import Basic

from shared.broker.errors import BrokerUnavailable
from shared.broker.types import Delivery

RENEW_AT = 10  # x-delivery-count at which a peeked message is replaced by a fresh copy
GET_TIMEOUT_S = 15.0
BROKER_HEADERS = frozenset({"x-delivery-count"})  # set by the broker on delivery, never republished


class Lease(Protocol):
    """The messages held, in queue order; `ack(delivery)` removes one from its queue for good."""

    queue: str
    deliveries: list[Delivery]

    async def ack(self, delivery: Delivery) -> None: ...


def delivery_count(delivery: Delivery) -> int:
    """How often the broker has handed this message out before (quorum queues say so in a header)."""
    try:
        return int(delivery.headers.get("x-delivery-count") or 0)
    except (TypeError, ValueError):
        return 0


def fresh_headers(delivery: Delivery) -> dict[str, Any]:
    """The message's headers without those the broker adds on delivery."""
    return {k: v for k, v in delivery.headers.items() if k not in BROKER_HEADERS}


class ChannelLease:
    """A lease on a pika channel owned by the broker's event loop (pika is not thread-safe)."""

    def __init__(self, channel: Any, queue: str, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.queue = queue
        self.loop = loop
        self.deliveries: list[Delivery] = []
        self._tags: dict[int, int] = {}  # id(delivery) → delivery tag
        self._acked: set[int] = set()
        self._waiting: asyncio.Future | None = None
        self._closed: asyncio.Future = loop.create_future()
        channel.add_callback(self._on_empty, [Basic.GetEmpty], one_shot=False)
        channel.add_on_close_callback(self._on_close)

    def _on_empty(self, _frame: Any) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    def _on_close(self, _channel: Any, reason: Any) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(BrokerUnavailable(f"channel closed while fetching from {self.queue}: {reason}"))

    def _on_get(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = Delivery(self.queue, body, method.routing_key, method.exchange, dict(properties.headers or {}),
                            properties.message_id, properties.correlation_id, properties.reply_to,
                            bool(method.redelivered))
        self._tags[id(delivery)] = method.delivery_tag
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(delivery)

    async def fill(self, limit: int) -> None:
        """Fetch up to `limit` messages, one basic.get at a time, until the queue answers empty."""
        while len(self.deliveries) < limit:
            self._waiting = self.loop.create_future()
            self.channel.basic_get(self.queue, self._on_get, auto_ack=False)
            got = await asyncio.wait_for(self._waiting, GET_TIMEOUT_S)
            if got is None:
                return
            self.deliveries.append(got)

    async def ack(self, delivery: Delivery) -> None:
        if not self.channel.is_open:
            raise BrokerUnavailable(f"the lease on {self.queue} was lost (channel closed): its messages went back")
        tag = self._tags[id(delivery)]
        if tag not in self._acked:
            self.channel.basic_ack(tag)
            self._acked.add(tag)

    def release(self) -> None:
        """Every message not acked back to the queue (nack with requeue, in the order fetched: RabbitMQ
        4.3+ counts a nack as no delivery, unlike a reject)."""
        if not self.channel.is_open:
            return  # the broker has returned them already
        for delivery in self.deliveries:
            tag = self._tags[id(delivery)]
            if tag not in self._acked:
                self.channel.basic_nack(tag, requeue=True)

    async def close(self) -> None:
        """Close the channel and wait for the broker's close-ok: by then it has processed every ack and
        return sent on it, so a look right after the lease sees the queue as the lease left it."""
        if self.channel.is_open:
            self.channel.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), GET_TIMEOUT_S)
        except TimeoutError:
            pass  # the connection is gone; the broker returns what was not acked by itself
