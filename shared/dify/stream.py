"""A Dify event stream (a streaming run, or a re-attach): async context manager and async iterator.

Time limits, and why:
- `idle_limit_s`: until the first event that is not a ping. A streaming run whose inputs Dify
  rejects answers 200, one ping, then nothing (DIFY.md); past the limit -> DifyStreamStalled.
- `gap_limit_s`: once events flow, the longest silence (not even a ping) tolerated; Dify pings
  every 10 s while a node waits, so silence means a dead connection -> DifyUnavailable.
- `max_ping_only_s` (off by default): pings only since the last real event. Off because a held
  checkpoint legitimately keeps a node waiting, with pings only, for up to 600 s.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from .errors import DifyStreamStalled, DifyUnavailable
from .models import StreamEvent
from .sse import SseSplitter, parse_sse_block


class DifyStream:
    def __init__(self, open_response: Callable[[], Awaitable[httpx.Response]], *, endpoint: str,
                 idle_limit_s: float | None, gap_limit_s: float, max_ping_only_s: float | None = None,
                 end_on_pause: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_response, self.endpoint = open_response, endpoint
        self.idle_limit_s, self.gap_limit_s, self.max_ping_only_s = idle_limit_s, gap_limit_s, max_ping_only_s
        self.end_on_pause, self._clock = end_on_pause, clock
        self._response: httpx.Response | None = None
        self._consumed = False
        self.task_id: str | None = None
        self.workflow_run_id: str | None = None
        # The event that ended the stream (workflow_finished / workflow_paused / error), if one did.
        self.terminal_event: StreamEvent | None = None

    @property
    def headers(self) -> httpx.Headers | None:
        return self._response.headers if self._response is not None else None

    async def open(self) -> DifyStream:
        if self._response is None:
            self._response = await self._open_response()
        return self

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> DifyStream:
        return await self.open()

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.events()

    async def events(self, include_pings: bool = False) -> AsyncIterator[StreamEvent]:
        """Parsed events, in order; pings only when asked for. An `error` event is yielded (and
        ends the stream), not raised: see DifyStream.terminal_event."""
        async for _raw, event in self._blocks():
            if event is not None and (include_pings or not event.is_ping):
                yield event

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """Each SSE event block exactly as received (blank-line separator included), pings too:
        for a gateway that forwards Dify's stream byte for byte."""
        async for raw, _event in self._blocks():
            yield raw

    async def _blocks(self) -> AsyncIterator[tuple[bytes, StreamEvent | None]]:
        if self._consumed:
            raise RuntimeError("a DifyStream can be iterated once")
        self._consumed = True
        opened_here = self._response is None
        await self.open()
        assert self._response is not None
        try:
            chunks = self._response.aiter_bytes().__aiter__()
            splitter = SseSplitter()
            started = last_event = self._clock()
            seen_event = False
            while True:
                chunk = await self._next_chunk(chunks, started, last_event, seen_event)
                if chunk is None:
                    rest = splitter.flush()
                    if rest is not None:
                        yield rest, parse_sse_block(rest)
                    return
                for block in splitter.feed(chunk):
                    event = parse_sse_block(block)
                    if event is not None and not event.is_ping:
                        seen_event, last_event = True, self._clock()
                        self.task_id = self.task_id or event.task_id
                        self.workflow_run_id = self.workflow_run_id or event.workflow_run_id
                    yield block, event
                    if event is not None and self._ends_stream(event):
                        self.terminal_event = event
                        return
        finally:
            if opened_here:
                await self.aclose()

    def _ends_stream(self, event: StreamEvent) -> bool:
        # With continue_on_pause Dify may keep the stream open after workflow_finished (DIFY.md).
        return event.event in ("workflow_finished", "error") or (
            event.event == "workflow_paused" and self.end_on_pause)

    async def _next_chunk(self, chunks: AsyncIterator[bytes], started: float, last_event: float,
                          seen_event: bool) -> bytes | None:
        now = self._clock()
        stall_deadline: float | None = None
        if not seen_event and self.idle_limit_s is not None:
            stall_deadline = started + self.idle_limit_s
        elif seen_event and self.max_ping_only_s is not None:
            stall_deadline = last_event + self.max_ping_only_s
        if stall_deadline is not None and now >= stall_deadline:
            raise self._stalled(seen_event)
        if stall_deadline is None:
            wait = self.gap_limit_s
        elif not seen_event:
            wait = stall_deadline - now  # only the idle limit: real Dify goes silent after its ping
        else:
            wait = min(self.gap_limit_s, stall_deadline - now)
        try:
            return await asyncio.wait_for(chunks.__anext__(), timeout=max(wait, 0.001))
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if stall_deadline is not None and self._clock() >= stall_deadline - 1e-3:
                raise self._stalled(seen_event) from None
            raise DifyUnavailable(None, "stream_timeout", f"{self.endpoint}: Dify sent nothing, not even a "
                                  f"ping, for {self.gap_limit_s:g} s", endpoint=self.endpoint) from None
        except httpx.HTTPError as exc:
            raise DifyUnavailable(None, "connection_error", f"{self.endpoint}: stream broke: "
                                  f"{type(exc).__name__}: {exc}", endpoint=self.endpoint) from None

    def _stalled(self, seen_event: bool) -> DifyStreamStalled:
        if not seen_event:
            message = (f"{self.endpoint}: no event but pings for {self.idle_limit_s:g} s after the stream opened. "
                       "Dify answers a streaming run whose inputs it rejects with 200, one ping and then "
                       "nothing: check the inputs against /v1/parameters (or the Dify worker is down)")
        else:
            message = (f"{self.endpoint}: nothing but pings for {self.max_ping_only_s:g} s since the last event "
                       f"(run {self.workflow_run_id})")
        return DifyStreamStalled(None, "stream_stalled", message, endpoint=self.endpoint)
