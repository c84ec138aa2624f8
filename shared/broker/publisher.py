"""Publishing with confirms, across lost connections and broker nodes.

- Publishes are pipelined: each gets the channel's next delivery tag and a future; the broker's
  (possibly `multiple`) acks resolve them in bulk. Nothing waits one-at-a-time.
- A message stays with its caller until it is confirmed: a lost connection (a node that died, a cut
  link) or a nack fails its future, and `publish` sends the same message again, with the same
  properties and message id, once the broker has a connection again — to whichever node answers.
  The copy the first node may have stored too is a duplicate the consumers absorb (every message
  body carries its `id`; every handler is idempotent): at-least-once, never zero.
- A nack renews the publishing channel (the Broker's `on_nack`). RabbitMQ 3.10 keeps nacking, for
  as long as the channel lives, every publish of a channel that first published to a quorum queue
  while its leader's node had just died — even once a new leader is elected — while a new channel
  on the same connection is confirmed at once (the fault suite's 3-node scenario found it).
- A message nobody confirms (a quorum queue that lost its majority keeps it pending) fails after
  `timeout_s` with PublishNotConfirmed: the caller never answers "accepted" for it. It renews the
  channel too, as a nack does: in one run of the fault suite's 3-node scenario, a channel on the
  node that survived the majority loss, with a publish pending while the queue's leadership moved
  to a returning node, had nothing confirmed for 30 s after (RabbitMQ 3.10; seen once, not
  reproduced on demand), and a new channel costs little.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
from pika.spec import Basic

from shared import metrics
from shared.broker.errors import BrokerUnavailable, PublishNotConfirmed
from shared.broker.signing import INTERNAL_HEADER, signature

RESEND_PAUSE_S = 0.05


class ConfirmWindow:
    """The unconfirmed publishes of the current publishing channel, by delivery tag."""

    def __init__(self, on_nack: Callable[[], None] | None = None) -> None:
        self.on_nack = on_nack
        self.channel: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tag = 0
        self._pending: dict[int, asyncio.Future] = {}

    def attach(self, channel: Any, loop: asyncio.AbstractEventLoop) -> None:
        """A new channel in confirm mode: its delivery tags start again at 1."""
        self.channel, self._loop, self._tag = channel, loop, 0

    @property
    def unconfirmed(self) -> int:
        return len(self._pending)

    def send(self, exchange: str, routing_key: str, body: bytes, props: pika.BasicProperties) -> asyncio.Future:
        if self.channel is None or not self.channel.is_open or self._loop is None:
            raise PublishNotConfirmed("no open channel")
        self.channel.basic_publish(exchange, routing_key, body, props)
        self._tag += 1
        fut = self._loop.create_future()
        self._pending[self._tag] = fut
        return fut

    def listener(self, channel: Any) -> Callable[[Any], None]:
        """The confirm callback for `channel`: a late ack of a channel replaced since carries tags of the
        old numbering, and must not resolve the new channel's publishes."""
        return lambda frame: self.on_confirm(frame) if channel is self.channel else None

    def on_confirm(self, frame: Any) -> None:
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
        if not ok:
            self.stalled()

    def stalled(self) -> None:
        """A nack, or a confirm that did not come in time: the next publishes take a new channel."""
        if self.on_nack is not None:
            self.on_nack()

    def fail_all(self, why: str) -> None:
        """The channel is gone: every caller still waiting sends its message again."""
        pending, self._pending = self._pending, {}
        self.channel = None
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PublishNotConfirmed(why))


class Publisher:
    """`publish` of the Broker: signs, builds the properties once, and sends until confirmed."""

    def __init__(self, window: ConfirmWindow, wait_ready: Callable[[float], Awaitable[None]],
                 signing_key: bytes | None) -> None:
        self.window = window
        self.wait_ready = wait_ready
        self.signing_key = signing_key

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict | None = None,
                      message_id: str | None = None, correlation_id: str | None = None,
                      reply_to: str | None = None, persistent: bool = True, timeout_s: float = 30.0,
                      content_type: str = "application/json", sign: bool = True) -> None:
        if sign and self.signing_key is not None:
            headers = {**(headers or {}), INTERNAL_HEADER: signature(self.signing_key, body)}
        # One message id for every copy sent, so that a copy is recognisable as the same message.
        props = pika.BasicProperties(
            content_type=content_type, delivery_mode=2 if persistent else 1, headers=headers or None,
            message_id=message_id or uuid.uuid4().hex, correlation_id=correlation_id, reply_to=reply_to,
            timestamp=int(time.time()))
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"not confirmed within {timeout_s:.0f}s ({exchange}/{routing_key})")
            try:
                await self.wait_ready(remaining)
                confirmed = self.window.send(exchange, routing_key, body, props)
                async with asyncio.timeout(remaining):  # cheaper than wait_for: no task, no extra future
                    await confirmed
                metrics.publish_confirm.observe(time.perf_counter() - started)
                return
            except (TimeoutError, PublishNotConfirmed, BrokerUnavailable) as exc:
                if isinstance(exc, TimeoutError):
                    self.window.stalled()
                if time.monotonic() >= deadline:
                    raise PublishNotConfirmed(f"{exchange}/{routing_key}: {exc}") from None
                await asyncio.sleep(RESEND_PAUSE_S)
