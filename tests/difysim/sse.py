"""Server-sent events as Dify writes them: `event: ping` keep-alives and compact `data: {json}` lines."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from .config import SimConfig
from .runs import CLOSE

PING = b"event: ping\n\n"


def encode(message: dict, compact: bool = True) -> bytes:
    # Live events are compact; the synthesized re-attach event uses json.dumps defaults (fixture 08).
    separators = (",", ":") if compact else (", ", ": ")
    return f"data: {json.dumps(message, ensure_ascii=False, separators=separators)}\n\n".encode()


async def relay(queue: asyncio.Queue, config: SimConfig, on_close: Callable[[], None] | None = None,
                first_ping: bool = True) -> AsyncIterator[bytes]:
    """Yield queued events, a ping whenever nothing came for `ping_interval_s`, and stop at CLOSE or
    after `sse_idle_close_s` without an event (Dify closes idle streams after 300 s)."""
    try:
        if first_ping:
            yield PING
        last_event = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=config.ping_interval_s)
            except TimeoutError:
                if time.monotonic() - last_event >= config.sse_idle_close_s:
                    return
                yield PING
                continue
            if message is CLOSE:
                return
            last_event = time.monotonic()
            yield encode(message)
    finally:
        if on_close is not None:
            on_close()


async def ping_then_hang(config: SimConfig) -> AsyncIterator[bytes]:
    """What Dify streams when a worker-side input check fails: one ping, then silence (fixture 12)."""
    yield PING
    await asyncio.sleep(config.sse_idle_close_s)


async def single(data: bytes) -> AsyncIterator[bytes]:
    yield data


def event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
