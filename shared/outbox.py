"""Messages a handler decided to publish once its transaction committed, and how they go out."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.broker import Broker


@dataclass
class Outbound:
    exchange: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    persistent: bool = True


async def publish_all(broker: Broker, outbound: list[Outbound]) -> None:
    """Publish with confirms, pipelined (all at once); raises if any is not confirmed."""
    if not outbound:
        return
    await asyncio.gather(*(broker.publish(o.exchange, o.routing_key, o.body, correlation_id=o.correlation_id,
                                          persistent=o.persistent) for o in outbound))
