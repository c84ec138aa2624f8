"""Messages a handler decided to publish once its transaction committed, and how they go out."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class Outbound:
    exchange: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    persistent: bool = True
    message_id: str | None = None


@dataclass
class Handled:
    """What a store handler returns when it has something to tell besides its messages: `after` runs on
    the event loop once the handler's transaction committed (its log lines, its metrics), before the
    messages are published — so a batch that had to run again (shared/broker/batches.py) tells each
    thing once, and only what happened. It may raise Reject or RetryLater, as a handler may."""

    outbound: list[Outbound]
    after: Callable[[], None] | None = None


class Publisher(Protocol):
    async def publish(self, exchange: str, routing_key: str, body: bytes, **kwargs: Any) -> None: ...


async def publish_all(broker: Publisher, outbound: list[Outbound]) -> None:
    """Publish with confirms, pipelined (all at once); raises if any is not confirmed."""
    if not outbound:
        return
    if len(outbound) == 1:  # the common case: no gather, which would wrap the one publish in a task
        o = outbound[0]
        await broker.publish(o.exchange, o.routing_key, o.body, correlation_id=o.correlation_id,
                             persistent=o.persistent, message_id=o.message_id)
        return
    await asyncio.gather(*(broker.publish(o.exchange, o.routing_key, o.body, correlation_id=o.correlation_id,
                                          persistent=o.persistent, message_id=o.message_id) for o in outbound))
