"""uvicorn's httptools protocol with less memory per connection and per request.

A held checkpoint call keeps its connection, its request cycle and its ASGI task for minutes, by the
ten thousand. Three of uvicorn's objects are a good part of what is not ours (tracemalloc, 10,000
held): the `asyncio.Event` of each request cycle and the one of each connection's flow control (a
deque of ~600 bytes inside each, for a wait that rarely happens), and each connection's deque for
pipelined requests (empty all but always). Here the events are a small signal with the same four
methods and the pipeline a list with the two operations uvicorn uses: the same behaviour, ~1.9 KB
less per held call. Everything else is uvicorn's.

If a uvicorn version no longer has these attributes, the protocol is uvicorn's own, unchanged.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class Signal:
    """asyncio.Event's set / clear / is_set / wait, without a deque until somebody waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, is_set: bool = False) -> None:
        self._set = is_set
        self._waiters: list[asyncio.Future] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class Pipeline(list):
    """The two deque operations uvicorn's pipeline uses, on a list (pipelined requests are rare)."""

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(getattr(self, "pipeline", None), deque):
            self.pipeline = Pipeline(self.pipeline)  # type: ignore[assignment]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        flow = getattr(self, "flow", None)
        event = getattr(flow, "_is_writable_event", None)
        if type(event) is asyncio.Event:
            flow._is_writable_event = Signal(event.is_set())  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        before = getattr(self, "cycle", None)
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        # Only a cycle made just now (nobody has waited on or set its event yet; an upgrade makes none).
        if cycle is not None and cycle is not before and type(getattr(cycle, "message_event", None)) is asyncio.Event:
            cycle.message_event = Signal(cycle.message_event.is_set())
