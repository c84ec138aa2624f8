"""An in-memory broker with the surface of `Broker` (STYLE 12; like dramatiq's StubBroker and
FastStream's TestRabbitBroker): exchanges and bindings from the same topology, the same ack policy
(dispatch.py), delay queues and DLQs, private reply queues, publisher "confirms". Service wiring is
unit-tested on it in milliseconds; the same behaviours are re-run on the real RabbitMQ in
tests/integration.

Time in delay queues is virtual: `await broker.advance(seconds)` lets delayed letters come back,
`await broker.drain()` runs every delivery until nothing moves. `fail_next_publishes(n)` makes the
next n publishes unconfirmed, like a lost connection.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.broker.calls import ChannelRefused
from shared.broker.dispatch import handle_delivery
from shared.broker.errors import BrokerUnavailable, PublishNotConfirmed
from shared.broker.signing import INTERNAL_HEADER, signature
from shared.broker.types import Consumer, Delivery, Handler
from shared.topology import Binding, Queue, Topology


@dataclass
class _Message:
    body: bytes
    routing_key: str
    exchange: str
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    redelivered: bool = False
    due: float = 0.0  # delay queues: when the letter expires back into its work queue


def _topic_match(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more words."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


class MemoryBroker:
    def __init__(self, *, name: str = "memory", topology: Topology, prefetch: int = 16, max_attempts: int = 5,
                 signing_key: bytes | None = None, handler_threads: int = 1) -> None:
        self.name = name
        self.topology = topology
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.signing_key = signing_key
        self.executor = ThreadPoolExecutor(max_workers=handler_threads, thread_name_prefix=f"{name}-handler")
        self.consumers: list[Consumer] = []
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self.queues: dict[str, deque[_Message]] = {q.name: deque() for q in topology.queues}
        self.queue_args: dict[str, dict[str, Any]] = {q.name: dict(q.arguments) for q in topology.queues}
        self.exchanges = {e.name: e.type for e in topology.exchanges}
        self.published: list[tuple[str, str, bytes, dict[str, Any]]] = []  # every publish, for assertions
        self.clock = 0.0
        self._fail_publishes = 0
        self._started = False
        self._ready = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._kick: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the Broker surface
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def consume(self, queue: str, handler: Handler, *, prefetch: int | None = None, declare: Queue | None = None,
                exclusive: bool = False, auto_ack: bool = False, bindings: tuple[tuple[str, str], ...] = ()) -> None:
        self.consumers.append(Consumer(queue, handler, prefetch or self.prefetch, declare, exclusive, auto_ack,
                                       bindings))
        if declare is not None:
            self.queues.setdefault(declare.name, deque())
            self.queue_args.setdefault(declare.name, dict(declare.arguments))

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.reconnect_hooks.append(hook)

    async def start(self, wait_s: float | None = 30.0) -> None:
        self._started = True
        self._kick = asyncio.Event()
        self._ready.set()
        self._pump = asyncio.create_task(self._run(), name=f"{self.name}-pump")

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"in-memory broker not started within {timeout_s:.0f}s") from None

    def stop_consuming(self) -> None:
        self._started = False

    async def close(self, drain_s: float = 5.0) -> None:
        self.stop_consuming()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=drain_s)
        if self._pump:
            self._pump.cancel()
        self._ready.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict[str, Any] | None = None,
                      message_id: str | None = None, correlation_id: str | None = None, reply_to: str | None = None,
                      persistent: bool = True, timeout_s: float = 30.0, content_type: str = "application/json",
                      sign: bool = True) -> None:
        if not self._ready.is_set():
            raise PublishNotConfirmed("in-memory broker not started")
        if self._fail_publishes > 0:
            self._fail_publishes -= 1
            raise PublishNotConfirmed("injected: not confirmed")
        headers = dict(headers or {})
        if sign and self.signing_key is not None:
            headers[INTERNAL_HEADER] = signature(self.signing_key, body)
        self.published.append((exchange, routing_key, body, headers))
        message = _Message(body, routing_key, exchange, headers, message_id, correlation_id, reply_to)
        for queue in self._route(exchange, routing_key):
            self._enqueue(queue, message)
        self._wake()

    async def run_handler(self, handler: Handler, delivery: Delivery) -> None:
        if asyncio.iscoroutinefunction(handler):
            await handler(delivery)
        else:
            await asyncio.get_running_loop().run_in_executor(self.executor, handler, delivery)

    async def get_one(self, queue: str) -> Delivery | None:
        messages = self.queues.get(queue)
        if not messages:
            return None
        return self._delivery(queue, messages.popleft())

    @contextlib.asynccontextmanager
    async def lease(self, queue: str, limit: int) -> AsyncIterator[_MemoryLease]:
        """Like Broker.lease: held messages leave the queue only when acked; the rest go back to its
        head, in order, when the lease ends — also when the holder fails mid-way (a crash)."""
        if queue not in self.queues:
            raise BrokerUnavailable(f"no queue {queue}")
        messages = self.queues[queue]
        held = _MemoryLease(queue, [messages.popleft() for _ in range(min(limit, len(messages)))], self._delivery)
        try:
            yield held
        finally:
            for message in reversed(held.unacked()):
                message.redelivered = True
                messages.appendleft(message)

    async def peek(self, queue: str, limit: int = 100) -> list[Delivery]:
        async with self.lease(queue, limit) as held:
            return list(held.deliveries)

    async def queue_depth(self, name: str) -> int:
        if name not in self.queues:
            raise ChannelRefused(f"no queue {name}")  # as RabbitMQ's 404 to a passive declare
        return len(self.queues[name])

    async def delete_topology(self) -> None:
        self.queues.clear()

    # ------------------------------------------------------------------ test controls
    def fail_next_publishes(self, count: int) -> None:
        self._fail_publishes = count

    async def advance(self, seconds: float) -> None:
        """Move virtual time on: delayed letters whose TTL has passed go back to their work queue."""
        self.clock += seconds
        for name, args in self.queue_args.items():
            if "x-message-ttl" not in args:
                continue
            messages = self.queues[name]
            while messages and messages[0].due <= self.clock:
                letter = messages.popleft()
                target = args.get("x-dead-letter-routing-key", letter.routing_key)
                self._enqueue(target, _Message(letter.body, target, "", letter.headers, letter.message_id,
                                               letter.correlation_id, letter.reply_to))
        self._wake()
        await self.drain()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Until no queue with a consumer holds a message and no delivery is being handled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._wake()
            await asyncio.sleep(0)
            busy = self._in_flight or any(self.queues.get(c.queue) for c in self.consumers)
            if not busy:
                await asyncio.sleep(0)
                if not (self._in_flight or any(self.queues.get(c.queue) for c in self.consumers)):
                    return
            if loop.time() > deadline:
                raise TimeoutError("in-memory broker did not drain")
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), timeout=0.05)

    def messages(self, queue: str) -> list[Delivery]:
        """What waits in a queue (a DLQ, say), without taking it."""
        return [self._delivery(queue, m) for m in self.queues.get(queue, ())]

    # ------------------------------------------------------------------ routing and delivery
    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self.queues else []
        kind = self.exchanges.get(exchange)
        if kind is None:
            raise PublishNotConfirmed(f"no exchange {exchange}")
        bindings: list[Binding] = [b for b in self.topology.bindings if b.exchange == exchange]
        bindings += [Binding(ex, c.declare.name, key) for c in self.consumers if c.declare is not None
                     for ex, key in c.bindings if ex == exchange]
        out = []
        for b in bindings:
            if kind == "fanout" or (kind == "direct" and b.routing_key == routing_key) or \
                    (kind == "topic" and _topic_match(b.routing_key, routing_key)):
                out.append(b.queue)
        return list(dict.fromkeys(out))

    def _enqueue(self, queue: str, message: _Message) -> None:
        if queue not in self.queues:
            return  # unroutable: RabbitMQ drops it too (no `mandatory` flag)
        ttl = self.queue_args.get(queue, {}).get("x-message-ttl")
        if ttl is not None:
            message = _Message(**{**message.__dict__, "due": self.clock + ttl / 1000})
        self.queues[queue].append(message)

    def _delivery(self, queue: str, m: _Message) -> Delivery:
        return Delivery(queue, m.body, m.routing_key, m.exchange, dict(m.headers), m.message_id, m.correlation_id,
                        m.reply_to, m.redelivered)

    def _wake(self) -> None:
        if self._kick is not None:
            self._kick.set()

    async def _run(self) -> None:
        assert self._kick is not None
        while True:
            await self._kick.wait()
            self._kick.clear()
            if not self._started:
                continue
            for consumer in self.consumers:
                messages = self.queues.get(consumer.queue)
                busy = sum(1 for t in self._in_flight if t.get_name() == consumer.queue)
                while messages and busy < consumer.prefetch:
                    task = asyncio.create_task(self._handle(consumer, messages.popleft()), name=consumer.queue)
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
                    busy += 1

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake()

    async def _handle(self, consumer: Consumer, message: _Message) -> None:
        settle = await handle_delivery(self, consumer, self._delivery(consumer.queue, message))
        if settle is None and not consumer.auto_ack:  # unacked: redelivered, like a channel that died
            message.redelivered = True
            self.queues[consumer.queue].appendleft(message)


class _MemoryLease:
    def __init__(self, queue: str, messages: list[_Message],
                 as_delivery: Callable[[str, _Message], Delivery]) -> None:
        self.queue = queue
        self._held = [(as_delivery(queue, m), m) for m in messages]
        self.deliveries = [d for d, _ in self._held]
        self._acked: set[int] = set()

    async def ack(self, delivery: Delivery) -> None:
        self._acked.add(id(delivery))

    def unacked(self) -> list[_Message]:
        return [m for d, m in self._held if id(d) not in self._acked]

