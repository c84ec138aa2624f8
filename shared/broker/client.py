"""Broker: one pika AsyncioConnection on the process's event loop.

- Publishes are pipelined: each publish gets the channel's next delivery tag and a future; the
  broker's (possibly `multiple`) acks resolve them in bulk. Nothing waits one-at-a-time.
- Consumers use manual acks and a per-channel prefetch; the ack policy lives in `dispatch.py`.
- A lost connection fails the outstanding confirms (callers re-publish: at-least-once), then
  reconnects with capped, jittered backoff, re-declares the topology and re-attaches consumers.
pika is not thread-safe: everything here runs on the loop; sync handlers run in an executor and
their results come back to the loop through asyncio, never by touching pika from a thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.spec import Basic

from shared import metrics
from shared.broker.errors import BrokerUnavailable, PublishNotConfirmed
from shared.broker.lease import RENEW_AT, ChannelLease, delivery_count, fresh_headers
from shared.broker.signing import INTERNAL_HEADER, signature
from shared.broker.types import Consumer, Delivery, Handler
from shared.logs import get_logger
from shared.topology import Queue, Topology

log = get_logger(__name__)
OP_TIMEOUT_S = 15.0


class Broker:
    def __init__(self, url: str, *, name: str, topology: Topology, prefetch: int = 64,
                 handler_threads: int = 8, max_attempts: int = 5, signing_key: bytes | None = None) -> None:
        self.url = url
        self.signing_key = signing_key  # every publish is signed with it (shared/broker/signing.py)
        self.name = name
        self.topology = topology
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.executor = ThreadPoolExecutor(max_workers=handler_threads, thread_name_prefix=f"{name}-handler")
        self.consumers: list[Consumer] = []
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AsyncioConnection | None = None
        self._pub: Any = None
        self._tag = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._ready = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task | None = None
        self._lost: asyncio.Event | None = None
        self.connections_made = 0
        self._in_flight: set[asyncio.Task] = set()
        self._ops: set[asyncio.Future] = set()
        self._hooks_running: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def consume(self, queue: str, handler: Handler, *, prefetch: int | None = None,
                declare: Queue | None = None, exclusive: bool = False, auto_ack: bool = False,
                bindings: tuple[tuple[str, str], ...] = ()) -> None:
        """Register a consumer; it is attached (its private queue declared and bound) on every (re)connect."""
        self.consumers.append(Consumer(queue, handler, prefetch or self.prefetch, declare, exclusive, auto_ack,
                                       bindings))

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Called after each connection beyond the first, once consumers are attached."""
        self.reconnect_hooks.append(hook)

    async def start(self, wait_s: float | None = 30.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._runner = asyncio.create_task(self._run(), name=f"{self.name}-broker")
        if wait_s is not None:
            await self.wait_ready(wait_s)

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"no connection to RabbitMQ within {timeout_s:.0f}s") from None

    def stop_consuming(self) -> None:
        """Stop new deliveries; those in flight still finish and are acked (graceful drain)."""
        for consumer in self.consumers:
            if consumer.channel is not None and consumer.channel.is_open and consumer.tag:
                consumer.channel.basic_cancel(consumer.tag)

    async def close(self, drain_s: float = 5.0) -> None:
        self.stop_consuming()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=drain_s)
        self._closing = True
        if self._runner:
            self._runner.cancel()
        if self._conn and self._conn.is_open:
            self._conn.close()
        self._fail_pending("broker closing")
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                await self._connect()
                backoff = 0.2
                self.connections_made += 1
                if self.connections_made > 1:
                    log.info("broker.reconnected", attempt=self.connections_made)
                    for hook in self.reconnect_hooks:
                        task = asyncio.create_task(hook())
                        self._hooks_running.add(task)  # a reference, so the task is not collected mid-way
                        task.add_done_callback(self._hooks_running.discard)
                await self._lost.wait()
            except asyncio.CancelledError:
                return
            except Exception as exc:  # any failure while connecting: back off and try again
                log.warning("broker.connect_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(backoff, 2))
                if self._conn and self._conn.is_open:
                    self._conn.close()
            self._ready.clear()
            self._fail_pending("connection lost")
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)

    async def _connect(self) -> None:
        params = pika.URLParameters(self.url)
        params.heartbeat = 30
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": self.name}
        opened: asyncio.Future = self._loop.create_future()
        self._lost = asyncio.Event()

        def on_open(conn):
            opened.done() or opened.set_result(conn)

        def on_open_error(conn, exc):
            opened.done() or opened.set_exception(BrokerUnavailable(str(exc) or type(exc).__name__))

        def on_close(conn, reason):
            if not opened.done():
                opened.set_exception(BrokerUnavailable(str(reason)))
            if not self._closing:
                log.warning("broker.connection_lost", reason=str(reason))
            self._ready.clear()
            self._fail_pending("connection lost")
            for op in list(self._ops):  # a declare or consume waiting on this connection: fail now
                op.done() or op.set_exception(BrokerUnavailable(f"connection lost: {reason}"))
            self._lost.set()

        self._conn = AsyncioConnection(params, on_open, on_open_error, on_close, custom_ioloop=self._loop)
        await asyncio.wait_for(opened, OP_TIMEOUT_S)
        self._pub = await self._open_channel()
        self._tag = 0
        await self._op(self._pub.confirm_delivery, self._on_confirm)
        await self._declare(self._pub)
        for consumer in self.consumers:
            await self._attach(consumer)
        self._ready.set()
        log.info("broker.ready", consumers=[c.queue for c in self.consumers])

    async def _open_channel(self, watch: bool = True):
        fut: asyncio.Future = self._loop.create_future()
        self._conn.channel(on_open_callback=lambda ch: fut.done() or fut.set_result(ch))
        channel = await asyncio.wait_for(fut, OP_TIMEOUT_S)
        if watch:
            channel.add_on_close_callback(self._on_channel_closed)
        return channel

    def _on_channel_closed(self, channel, reason) -> None:
        # A channel closed by the broker (e.g. a failed declare) leaves the connection unusable for
        # our purposes; closing the connection triggers one clean reconnect of everything.
        if self._closing or not self._conn or not self._conn.is_open:
            return
        if isinstance(reason, pika.exceptions.ChannelClosedByClient):
            return
        log.warning("broker.channel_closed", channel=channel.channel_number, reason=str(reason))
        self._conn.close()

    async def _op(self, fn, *args, **kwargs):
        """Await a pika call that reports through `callback=`."""
        fut: asyncio.Future = self._loop.create_future()
        self._ops.add(fut)
        try:
            fn(*args, callback=lambda frame=None: fut.done() or fut.set_result(frame), **kwargs)
            return await asyncio.wait_for(fut, OP_TIMEOUT_S)
        finally:
            self._ops.discard(fut)

    async def _declare(self, ch) -> None:
        for ex in self.topology.exchanges:
            await self._op(ch.exchange_declare, exchange=ex.name, exchange_type=ex.type, durable=True)
        for q in self.topology.queues:
            await self._op(ch.queue_declare, queue=q.name, durable=q.durable, arguments=q.arguments)
        for b in self.topology.bindings:
            await self._op(ch.queue_bind, queue=b.queue, exchange=b.exchange, routing_key=b.routing_key)

    async def _attach(self, consumer: Consumer) -> None:
        ch = await self._open_channel()
        await self._op(ch.basic_qos, prefetch_count=consumer.prefetch)
        if consumer.declare is not None:
            q = consumer.declare
            await self._op(ch.queue_declare, queue=q.name, durable=q.durable, exclusive=consumer.exclusive,
                           auto_delete=not q.durable, arguments=q.arguments)
            for exchange, routing_key in consumer.bindings:
                await self._op(ch.queue_bind, queue=q.name, exchange=exchange, routing_key=routing_key)
        consumer.channel = ch
        # The broker cancels a consumer when its queue goes away (deleted, a quorum leader lost): without
        # a consumer the process would look ready while doing nothing, so reconnect and re-attach.
        ch.add_on_cancel_callback(lambda _frame: self._closing or not self._conn.is_open or self._conn.close())

        def on_message(channel, method, properties, body):
            task = asyncio.ensure_future(self._deliver(consumer, channel, method, properties, body))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        consumer.tag = f"{self.name}.{consumer.queue}.{self.connections_made}"
        await self._op(ch.basic_consume, queue=consumer.queue, on_message_callback=on_message,
                       auto_ack=consumer.auto_ack, consumer_tag=consumer.tag)

    # ------------------------------------------------------------------ publishing
    def _on_confirm(self, frame) -> None:
        method = frame.method
        ok = isinstance(method, Basic.Ack)
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            fut = self._pending.pop(tag, None)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(None)
                else:
                    fut.set_exception(PublishNotConfirmed("broker nacked the message"))

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PublishNotConfirmed(why))

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict | None = None,
                      message_id: str | None = None, correlation_id: str | None = None,
                      reply_to: str | None = None, persistent: bool = True, timeout_s: float = 30.0,
                      content_type: str = "application/json", sign: bool = True) -> None:
        """Publish and wait for the broker's confirm, re-publishing across reconnects until
        `timeout_s`. At-least-once: a message may arrive twice, never zero times once this returns.
        `sign=False` re-publishes a delivery as it came (its own signature headers travel with it)."""
        if sign and self.signing_key is not None:
            headers = {**(headers or {}), INTERNAL_HEADER: signature(self.signing_key, body)}
        props = pika.BasicProperties(
            content_type=content_type, delivery_mode=2 if persistent else 1, headers=headers or None,
            message_id=message_id, correlation_id=correlation_id, reply_to=reply_to,
            timestamp=int(time.time()))
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"not confirmed within {timeout_s:.0f}s ({exchange}/{routing_key})")
            try:
                await self.wait_ready(remaining)
                await asyncio.wait_for(self._publish_once(exchange, routing_key, body, props), remaining)
                metrics.publish_confirm.observe(time.perf_counter() - started)
                return
            except (TimeoutError, PublishNotConfirmed, BrokerUnavailable) as exc:
                if time.monotonic() >= deadline:
                    raise PublishNotConfirmed(f"{exchange}/{routing_key}: {exc}") from None
                await asyncio.sleep(0.05)

    def _publish_once(self, exchange, routing_key, body, props) -> asyncio.Future:
        if not self._pub or not self._pub.is_open:
            raise PublishNotConfirmed("no open channel")
        self._pub.basic_publish(exchange, routing_key, body, props)
        self._tag += 1
        fut = self._loop.create_future()
        self._pending[self._tag] = fut
        return fut

    # ------------------------------------------------------------------ consuming
    async def _deliver(self, consumer: Consumer, channel, method, properties, body: bytes) -> None:
        from shared.broker.dispatch import handle_delivery

        delivery = Delivery(
            queue=consumer.queue, body=body, routing_key=method.routing_key, exchange=method.exchange,
            headers=dict(properties.headers or {}), message_id=properties.message_id,
            correlation_id=properties.correlation_id, reply_to=properties.reply_to,
            redelivered=bool(method.redelivered))
        settle = await handle_delivery(self, consumer, delivery)
        if consumer.auto_ack or settle is None:
            return
        if channel.is_open and channel is consumer.channel:
            channel.basic_ack(method.delivery_tag)
        # else: the channel died while we worked; the broker redelivers the message (at-least-once).

    async def run_handler(self, handler: Handler, delivery: Delivery) -> None:
        if asyncio.iscoroutinefunction(handler):
            await handler(delivery)
        else:
            await self._loop.run_in_executor(self.executor, handler, delivery)

    async def delete_topology(self) -> None:
        """Delete this topology's queues and exchanges (tests and `make clean`; never in service code)."""
        await self.wait_ready(OP_TIMEOUT_S)
        for q in self.topology.queues:
            await self._op(self._pub.queue_delete, queue=q.name)
        for ex in self.topology.exchanges:
            await self._op(self._pub.exchange_delete, exchange=ex.name)

    async def get_one(self, queue: str) -> Delivery | None:
        """Take one message from a queue (ack'd), for inspecting DLQs; None if empty."""
        await self.wait_ready(OP_TIMEOUT_S)
        fut: asyncio.Future = self._loop.create_future()

        def on_get(channel, method, properties, body):
            fut.done() or fut.set_result(Delivery(queue, body, method.routing_key, method.exchange,
                                                  dict(properties.headers or {}), properties.message_id,
                                                  properties.correlation_id, properties.reply_to,
                                                  bool(method.redelivered)))

        ch = await self._open_channel(watch=False)
        try:
            ch.basic_get(queue, on_get, auto_ack=True)
            # basic_get answers get-empty without calling on_get: poll briefly for either outcome.
            try:
                return await asyncio.wait_for(fut, 2.0)
            except TimeoutError:
                return None
        finally:
            if ch.is_open:
                ch.close()

    @contextlib.asynccontextmanager
    async def lease(self, queue: str, limit: int) -> AsyncIterator[ChannelLease]:
        """Up to `limit` messages of `queue`, held unacked until `ack`ed; the rest go back at the end
        (shared/broker/lease.py)."""
        await self.wait_ready(OP_TIMEOUT_S)
        assert self._loop is not None  # set by start(), which ready implies
        ch = await self._open_channel(watch=False)  # a failing get closes this channel only
        held = ChannelLease(ch, queue, self._loop)
        try:
            await held.fill(limit)
            yield held
        finally:
            held.release()
            await held.close()

    async def peek(self, queue: str, limit: int = 100) -> list[Delivery]:
        """Up to `limit` messages of `queue`, left in it. One worn by many peeks (RENEW_AT) is replaced
        by a fresh copy (confirmed first), so that looking never uses up a message's delivery limit."""
        async with self.lease(queue, limit) as held:
            for delivery in held.deliveries:
                if delivery_count(delivery) >= RENEW_AT:
                    await self.publish("", queue, delivery.body, headers=fresh_headers(delivery),
                                       message_id=delivery.message_id, correlation_id=delivery.correlation_id,
                                       reply_to=delivery.reply_to, timeout_s=10, sign=False)
                    await held.ack(delivery)
            return list(held.deliveries)

    async def queue_depth(self, name: str) -> int:
        """Messages ready in a queue (passive declare); for readiness checks and tests."""
        await self.wait_ready(OP_TIMEOUT_S)
        ch = await self._open_channel(watch=False)  # a missing queue closes this channel only
        try:
            frame = await self._op(ch.queue_declare, queue=name, passive=True)
            return frame.method.message_count
        finally:
            if ch.is_open:
                ch.close()
