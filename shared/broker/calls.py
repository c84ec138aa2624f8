"""Awaiting pika's callback-style calls (declare, bind, qos, consume) on the event loop."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.broker.errors import BrokerUnavailable

OP_TIMEOUT_S = 15.0


class ChannelRefused(BrokerUnavailable):
    """The broker closed a channel in answer to a call on it (e.g. 404 for a queue that is not there)."""


def resolve(fut: asyncio.Future, value: Any = None) -> None:
    if not fut.done():
        fut.set_result(value)


def fail(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class PendingCalls:
    """The calls waiting on the current connection: a lost connection fails them all at once, instead
    of each waiting out its timeout."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future] = set()

    async def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any,
                   refusing: Any = None, **kwargs: Any) -> Any:
        """`fn(*args, callback=…, **kwargs)`, awaited. `refusing`: a channel the broker may close in
        answer (a passive declare of a missing queue): its close raises ChannelRefused at once."""
        fut: asyncio.Future = loop.create_future()
        if refusing is not None:
            refusing.add_on_close_callback(lambda _ch, reason: fail(fut, ChannelRefused(str(reason))))
        self._waiting.add(fut)
        try:
            fn(*args, callback=lambda frame=None: resolve(fut, frame), **kwargs)
            return await asyncio.wait_for(fut, OP_TIMEOUT_S)
        finally:
            self._waiting.discard(fut)

    def fail_all(self, why: str) -> None:
        for fut in list(self._waiting):
            fail(fut, BrokerUnavailable(why))
