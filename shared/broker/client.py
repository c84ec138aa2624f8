"""Broker: one pika AsyncioConnection on the process's event loop, to one node of the cluster at a time.

- The nodes come from the URL list (nodes.py): the first that answers after a shuffle; on a lost
  connection the next one, with capped, jittered backoff once every node has failed in a row.
- Each connection re-declares the topology (queues only where absent: a queue's arguments are fixed
  when it is created), re-attaches the consumers, then runs the reconnect hooks (ingest re-sends
  its held calls). Publishes not confirmed when a connection is lost are sent again (publisher.py).
- Consumers use manual acks and a per-channel prefetch; the ack policy lives in `dispatch.py`.
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

from shared.broker import coalesce
from shared.broker.calls import OP_TIMEOUT_S, ChannelRefused, PendingCalls, fail, resolve
from shared.broker.errors import BrokerUnavailable
from shared.broker.lease import RENEW_AT, ChannelLease, delivery_count, fresh_headers
from shared.broker.nodes import NodeRing, parse_node_urls, safe_url
from shared.broker.publisher import ConfirmWindow, Publisher
from shared.broker.types import Consumer, Delivery, Handler
from shared.logs import get_logger
from shared.topology import Queue, Topology

log = get_logger(__name__)
coalesce.install()  # every connection of this process sends its waiting frames in one write
BACKOFF_START_S, BACKOFF_CAP_S = 0.2, 10.0
RENEW_AFTER_NACK_S = 1.0  # at most one new publishing channel per second (a majority loss nacks everything)


class Broker:
    def __init__(self, url: str, *, name: str, topology: Topology, prefetch: int = 64,
                 handler_threads: int = 8, max_attempts: int = 5, signing_key: bytes | None = None) -> None:
        self.url = url  # one node URL or several (nodes.py)
        self.nodes = NodeRing(parse_node_urls(url))
        self.signing_key = signing_key  # every publish is signed with it (shared/broker/signing.py)
        self.name = name
        self.topology = topology
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.executor = ThreadPoolExecutor(max_workers=handler_threads, thread_name_prefix=f"{name}-handler")
        self.consumers: list[Consumer] = []
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None  # the AsyncioConnection of the moment
        self._pub: Any = None
        self.confirms = ConfirmWindow(on_nack=self._nacked)
        self._renewing = False
        self._renewed_at = float("-inf")
        self._publisher = Publisher(self.confirms, self.wait_ready, signing_key)
        self._ready = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task | None = None
        self._lost = asyncio.Event()
        self.connections_made = 0
        self._in_flight: set[asyncio.Future] = set()
        self._calls = PendingCalls()
        self._hooks_running: set[asyncio.Future] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def node(self) -> str | None:
        """The node connected to (or being tried), without its password."""
        return safe_url(self.nodes.current) if self.nodes.current else None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Broker.start() was not called"
        return self._loop

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
        if self._ready.is_set():  # every publish asks: connected, it costs no wait_for
            return
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
        self.confirms.fail_all("broker closing")
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        backoff, failed_in_a_row = BACKOFF_START_S, 0
        while not self._closing:
            url = self.nodes.next()
            try:
                await self._connect(url)
                backoff, failed_in_a_row = BACKOFF_START_S, 0
                self.connections_made += 1
                if self.connections_made > 1:
                    log.info("broker.reconnected", attempt=self.connections_made, node=self.node)
                    for hook in self.reconnect_hooks:
                        task = asyncio.ensure_future(hook())
                        self._hooks_running.add(task)  # a reference, so the task is not collected mid-way
                        task.add_done_callback(self._hooks_running.discard)
                await self._lost.wait()
            except asyncio.CancelledError:
                return
            except Exception as exc:  # any failure while connecting: the next node, backing off after a round
                failed_in_a_row += 1
                log.warning("broker.connect_failed", node=self.node, error=f"{type(exc).__name__}: {exc}")
                self._drop_connection()
            self._ready.clear()
            self.confirms.fail_all("connection lost")
            if self._closing:
                return
            if failed_in_a_row % len(self.nodes) != 0:
                continue  # the next node may answer at once
            # A lost connection, or every node refused in turn: wait a little (jittered, so that the
            # replicas do not all come back at the same instant), longer after each failed round.
            await asyncio.sleep(backoff * (0.5 + random.random()))
            if failed_in_a_row:
                backoff = min(backoff * 2, BACKOFF_CAP_S)

    def _drop_connection(self, conn: Any = None) -> None:
        """Close the connection (`conn`: only if it is still the current one); on_close then ends
        `_run`'s wait, and the next node is tried."""
        if conn is not None and conn is not self._conn:
            return  # a callback of a connection already replaced
        if not self._closing and self._conn is not None and self._conn.is_open:
            self._conn.close()

    async def _connect(self, url: str) -> None:
        params = pika.URLParameters(url)
        params.heartbeat = 30
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": self.name}
        opened: asyncio.Future = self.loop.create_future()
        lost = self._lost = asyncio.Event()

        def on_open(conn: Any) -> None:
            resolve(opened, conn)

        def on_open_error(_conn: Any, exc: BaseException | str) -> None:
            fail(opened, BrokerUnavailable(str(exc) or type(exc).__name__))

        def on_close(conn: Any, reason: BaseException) -> None:
            fail(opened, BrokerUnavailable(str(reason)))
            lost.set()
            if conn is not self._conn:
                # A connection given up earlier (a connect that timed out) whose close completed only
                # now, after a newer one opened: it must not mark that one lost or fail its publishes.
                return
            if not self._closing:
                log.warning("broker.connection_lost", node=self.node, reason=str(reason))
            self._ready.clear()
            self.confirms.fail_all("connection lost")
            self._calls.fail_all(f"connection lost: {reason}")  # a declare or consume waiting on it

        self._conn = AsyncioConnection(params, on_open, on_open_error, on_close, custom_ioloop=self.loop)
        await asyncio.wait_for(opened, OP_TIMEOUT_S)
        self._pub = await self._publishing_channel()
        self.confirms.attach(self._pub, self.loop)
        await self._declare(self._pub)
        for consumer in self.consumers:
            await self._attach(consumer)
        self._ready.set()
        log.info("broker.ready", node=self.node, consumers=[c.queue for c in self.consumers])

    async def _publishing_channel(self) -> Any:
        ch = await self._open_channel()
        await self._op(ch.confirm_delivery, self.confirms.listener(ch))
        return ch

    def _nacked(self) -> None:
        if self._renewing or not self.ready or time.monotonic() - self._renewed_at < RENEW_AFTER_NACK_S:
            return
        self._renewing = True
        task = asyncio.ensure_future(self._renew_publishing_channel())
        self._hooks_running.add(task)
        task.add_done_callback(self._hooks_running.discard)

    async def _renew_publishing_channel(self) -> None:
        """A nacked publish, or one never confirmed: the next ones go through a new channel
        (publisher.py says why); the callers of what is still unconfirmed on the old one send it
        again there."""
        conn = self._conn
        try:
            ch = await self._publishing_channel()
            if conn is not self._conn:  # reconnected meanwhile: the new connection has its own channel
                ch.close()
                return
            old, self._pub = self._pub, ch
            self.confirms.fail_all("publishing channel renewed after a nack or a missing confirm")
            self.confirms.attach(ch, self.loop)
            if old is not None and old.is_open:
                old.close()
            log.info("broker.publish_channel_renewed", node=self.node)
        except Exception as exc:  # the connection is going away: its reconnect opens a new channel anyway
            log.warning("broker.publish_channel_renew_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._renewing = False
            self._renewed_at = time.monotonic()

    async def _open_channel(self, watch: bool = True) -> Any:
        fut: asyncio.Future = self.loop.create_future()
        self._conn.channel(on_open_callback=lambda ch: resolve(fut, ch))
        channel = await asyncio.wait_for(fut, OP_TIMEOUT_S)
        if watch:
            channel.add_on_close_callback(self._on_channel_closed)
        return channel

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        # A channel closed by the broker (e.g. a failed declare) leaves the connection unusable for
        # our purposes; closing the connection triggers one clean reconnect of everything.
        if isinstance(reason, pika.exceptions.ChannelClosedByClient) or channel.connection is not self._conn:
            return
        if not self._closing and self._conn is not None and self._conn.is_open:
            log.warning("broker.channel_closed", channel=channel.channel_number, reason=str(reason))
        self._drop_connection()

    async def _op(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await a pika call that reports through `callback=`."""
        return await self._calls.call(self.loop, fn, *args, **kwargs)

    async def _declare(self, ch: Any) -> None:
        for ex in self.topology.exchanges:
            await self._op(ch.exchange_declare, exchange=ex.name, exchange_type=ex.type, durable=True)
        # A queue that exists is left as it is: RabbitMQ refuses a re-declare whose arguments differ
        # (an older release's, or a process given fewer node URLs and so another replica count), and a
        # refusal would close the channel on every connect. Changing a live queue is a policy's job.
        probe = await self._open_channel(watch=False)
        try:
            for q in self.topology.queues:
                try:
                    await self._op(probe.queue_declare, queue=q.name, passive=True, refusing=probe)
                except ChannelRefused:  # 404: not there yet; declared with its arguments
                    await self._op(ch.queue_declare, queue=q.name, durable=q.durable, arguments=q.arguments)
                    probe = await self._open_channel(watch=False)
        finally:
            if probe.is_open:
                probe.close()
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
        conn = self._conn
        ch.add_on_cancel_callback(lambda _frame: self._drop_connection(conn))

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            task = asyncio.ensure_future(self._deliver(consumer, channel, method, properties, body))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        consumer.tag = f"{self.name}.{consumer.queue}.{self.connections_made}"
        await self._op(ch.basic_consume, queue=consumer.queue, on_message_callback=on_message,
                       auto_ack=consumer.auto_ack, consumer_tag=consumer.tag)

    # ------------------------------------------------------------------ publishing
    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict | None = None,
                      message_id: str | None = None, correlation_id: str | None = None,
                      reply_to: str | None = None, persistent: bool = True, timeout_s: float = 30.0,
                      content_type: str = "application/json", sign: bool = True) -> None:
        """Publish and wait for the broker's confirm, re-publishing across reconnects (to any node) until
        `timeout_s`. At-least-once: a message may arrive twice, never zero times once this returns.
        `sign=False` re-publishes a delivery as it came (its own signature headers travel with it)."""
        await self._publisher.publish(exchange, routing_key, body, headers=headers, message_id=message_id,
                                      correlation_id=correlation_id, reply_to=reply_to, persistent=persistent,
                                      timeout_s=timeout_s, content_type=content_type, sign=sign)

    # ------------------------------------------------------------------ consuming
    async def _deliver(self, consumer: Consumer, channel: Any, method: Any, properties: Any, body: bytes) -> None:
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
            await self.loop.run_in_executor(self.executor, handler, delivery)

    # ------------------------------------------------------------------ tools (tests, the CLI)
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
        fut: asyncio.Future = self.loop.create_future()

        def on_get(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
            resolve(fut, Delivery(queue, body, method.routing_key, method.exchange, dict(properties.headers or {}),
                                  properties.message_id, properties.correlation_id, properties.reply_to,
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
        ch = await self._open_channel(watch=False)  # a failing get closes this channel only
        held = ChannelLease(ch, queue, self.loop)
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
            frame = await self._op(ch.queue_declare, queue=name, passive=True, refusing=ch)
            return frame.method.message_count
        finally:
            if ch.is_open:
                ch.close()
