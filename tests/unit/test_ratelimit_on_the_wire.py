"""The rate limit holds for requests as they leave, also when Dify stalls: a request that waited for
a free slot must not bring a token it took long ago (real clock, ~3 s)."""
from __future__ import annotations

import asyncio
import time

from bench.common import worst_window
from shared.dify.ratelimit import AppLimiter

RATE, BURST, SLOTS = 50.0, 5.0, 4


def test_requests_leave_within_the_rate_even_after_a_stall():
    async def scenario() -> list[float]:
        limiter = AppLimiter("demo", rate_per_s=RATE, max_concurrency=SLOTS, burst=BURST)
        stall_until = time.monotonic() + 1.0  # Dify answers nothing for the first second
        sent: list[float] = []

        async def request() -> None:
            async with limiter:
                sent.append(time.monotonic())
                await asyncio.sleep(max(0.0, stall_until - time.monotonic()) + 0.005)

        await asyncio.gather(*(request() for _ in range(120)))
        return sent

    sent = sorted(asyncio.run(scenario()))
    assert len(sent) == 120
    # Sleeps can only overshoot, so the bound holds on a loaded machine too.
    assert worst_window(sent, 1.0) <= BURST + RATE * 1.0 + 1
    assert worst_window(sent, 0.2) <= BURST + RATE * 0.2 + 1
