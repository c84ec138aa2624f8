"""What the broker hands to handlers, and what a consumer is: shared by the RabbitMQ broker
(client.py) and the in-memory one (memory.py), so the ack policy and the router serve both."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.topology import Queue

# The routing key a message was first published with. Delay queues and DLQs re-route a message by
# queue name; the router dispatches on this header when it is there, so a retried or replayed
# `run.ended` is still handled as `run.ended`.
ROUTING_KEY_HEADER = "x-hitl-routing-key"


@dataclass
class Delivery:
    queue: str
    body: bytes
    routing_key: str
    exchange: str
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    redelivered: bool

    @property
    def attempt(self) -> int:
        return int(self.headers.get("x-hitl-attempt", 1))

    @property
    def original_routing_key(self) -> str:
        return str(self.headers.get(ROUTING_KEY_HEADER) or self.routing_key)


Handler = Callable[[Delivery], Awaitable[None] | None]


@dataclass
class Consumer:
    queue: str
    handler: Handler
    prefetch: int
    declare: Queue | None = None  # a private queue (e.g. ingest's reply queue), declared per connection
    exclusive: bool = False
    auto_ack: bool = False
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key) for the private queue
    channel: Any = field(default=None, repr=False)
    tag: str | None = None
