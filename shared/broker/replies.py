"""Held calls and request/reply over RabbitMQ (ingest, console, notifier).

Each process owns one reply queue. A request goes out with `reply_to` = that queue and a fresh
`correlation_id`; the waiting coroutine parks on a future keyed by that id. Nothing polls the store:
a held call costs one future and one dict entry.

If the broker connection drops, the reply queue (exclusive) goes with it, and replies sent meanwhile
are lost; so after a reconnect every held checkpoint call is re-sent — the decider re-attaches it,
or answers at once if a decision landed during the outage.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from shared import metrics
from shared.broker.signing import Unverified, Verifier
from shared.broker.types import Delivery
from shared.logs import get_logger
from shared.models import DecisionSubmitted, Message, Reply
from shared.topology import CHECKPOINT_REQUESTED, Names, Queue

log = get_logger(__name__)


class ShuttingDown(Exception):
    """The process is stopping: held calls are answered 503 so Dify retries (on another replica)."""


@dataclass(slots=True)
class Waiter:
    future: asyncio.Future
    request: tuple[str, bytes] | None = None  # (message id, body) of a held checkpoint call: re-sent on reconnect


class ReplyRouter:
    def __init__(self, broker: Any, names: Names, instance: str | None = None, role: str = "ingest",
                 verifier: Verifier | None = None) -> None:
        self.broker = broker
        self.names = names
        self.verifier = verifier  # replies come from the decider, signed like every internal message
        where = f"{instance or socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.queue = f"{names.namespace}.{role}.{where}.replies"
        self.waiters: dict[str, Waiter] = {}
        self.held_per_app: dict[str, int] = {}
        broker.consume(self.queue, self._on_reply, declare=Queue(self.queue, durable=False), exclusive=True,
                       auto_ack=True, prefetch=1000)
        broker.on_reconnect(self.resend_held)

    async def _on_reply(self, delivery: Delivery) -> None:
        waiter = self.waiters.get(delivery.correlation_id or "")
        if waiter is None or waiter.future.done():
            return  # the call this answers has ended (window over, client gone): the store keeps the result
        if self.verifier is not None:
            try:
                self.verifier.sender(delivery.headers, delivery.body, bots_allowed=False)
            except Unverified as exc:
                log.warning("reply.unverified", reason=exc.reason)
                return
        try:
            waiter.future.set_result(Reply.model_validate_json(delivery.body))
        except ValueError as exc:
            log.warning("reply.invalid", error=str(exc)[:200])

    async def hold_checkpoint(self, app: str, message_id: str, body: bytes, window_s: float) -> Reply | None:
        """Publish a serialized checkpoint.requested and wait up to `window_s` for its resolution;
        None when the window ends."""
        correlation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop.create_future(), (message_id, body))
        self.waiters[correlation_id] = waiter
        self.held_per_app[app] = self.held_per_app.get(app, 0) + 1
        metrics.held_calls.inc()
        # One timer handle per held call rather than wait_for + shield (two more futures and a task
        # callback each): with thousands held, that is most of what a held call costs.
        timer = loop.call_later(window_s, _settle, waiter.future, None)
        try:
            await self.broker.publish(self.names.commands, CHECKPOINT_REQUESTED, body, message_id=message_id,
                                      correlation_id=correlation_id, reply_to=self.queue,
                                      timeout_s=min(window_s, 30.0))
            return await waiter.future
        finally:
            timer.cancel()
            metrics.held_calls.dec()
            self.held_per_app[app] -= 1
            self.waiters.pop(correlation_id, None)

    async def submit_decision(self, decision: DecisionSubmitted, wait_s: float) -> Reply | None:
        """Publish a decision and wait for the decider's verdict; None if it did not come in time
        (the decision is durable in its queue and will still be applied)."""
        return await self.request(self.names.decisions, "", decision, wait_s)

    async def request(self, exchange: str, routing_key: str, message: Message, wait_s: float) -> Reply | None:
        """Publish a message that the decider answers on this process's reply queue; None when the
        answer did not come within `wait_s` (the message is durable in its queue all the same)."""
        correlation_id = uuid.uuid4().hex
        waiter = Waiter(asyncio.get_running_loop().create_future())
        self.waiters[correlation_id] = waiter
        try:
            await self.broker.publish(exchange, routing_key, message.to_bytes(), message_id=message.id,
                                      correlation_id=correlation_id, reply_to=self.queue, timeout_s=wait_s)
            return await asyncio.wait_for(asyncio.shield(waiter.future), wait_s)
        except TimeoutError:
            return None
        finally:
            self.waiters.pop(correlation_id, None)

    async def resend_held(self) -> None:
        held = [(cid, w.request) for cid, w in self.waiters.items() if w.request is not None and not w.future.done()]
        if held:
            log.info("holds.resend_after_reconnect", held=len(held))
        await asyncio.gather(*(self.broker.publish(self.names.commands, CHECKPOINT_REQUESTED, body,
                                                   message_id=message_id, correlation_id=cid, reply_to=self.queue)
                               for cid, (message_id, body) in held),
                             return_exceptions=True)

    def fail_all(self) -> None:
        for waiter in self.waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown())


def _settle(future: asyncio.Future, result) -> None:
    if not future.done():
        future.set_result(result)
