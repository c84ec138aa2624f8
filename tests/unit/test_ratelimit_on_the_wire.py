"""The Dify client's rate and concurrency limits. The rate holds for requests as they leave, also
when Dify stalls: a request that waited for a free slot must not bring a token it took long ago."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import REGISTRY

from bench.common import worst_window
from shared.dify import TokenBucket
from shared.dify.ratelimit import AppLimiter
from tests.unit.test_dify_client_limits import RECORD, RUN_ID, answers, make_client, run

RATE, BURST, SLOTS = 50.0, 5.0, 4


def test_requests_leave_within_the_rate_even_after_a_stall():  # real clock, ~3 s
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


def test_token_bucket_on_a_fake_clock_makes_calls_beyond_the_burst_wait():
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    async def scenario():
        bucket = TokenBucket(5, clock=lambda: now[0], sleep=fake_sleep)
        waited = await asyncio.gather(*(bucket.acquire() for _ in range(12)))
        return bucket, waited

    bucket, waited = run(scenario())
    assert bucket.waits == 7 and waited.count(True) == 7
    assert now[0] == pytest.approx(7 / 5)


def test_client_rate_limit_makes_calls_wait_and_counts_them():
    handler, calls = answers(httpx.Response(200, json=RECORD))

    async def scenario():
        async with make_client(handler, name="ratelimited", rate_per_s=5) as dify:
            await asyncio.gather(*(dify.get_run(RUN_ID) for _ in range(12)))
            return dify.waits

    before = REGISTRY.get_sample_value("hitl_dify_ratelimit_waits_total", {"app": "ratelimited"}) or 0
    waits = run(scenario())
    assert waits >= 7 and len(calls) == 12
    assert REGISTRY.get_sample_value("hitl_dify_ratelimit_waits_total", {"app": "ratelimited"}) - before == waits


def test_no_more_calls_in_flight_than_max_concurrency():
    in_flight, peak = [0], [0]

    async def handler(request: httpx.Request) -> httpx.Response:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.02)
        in_flight[0] -= 1
        return httpx.Response(200, json=RECORD)

    async def scenario():
        async with make_client(handler, rate_per_s=1000, max_concurrency=2) as dify:
            await asyncio.gather(*(dify.get_run(RUN_ID) for _ in range(8)))

    run(scenario())
    assert peak[0] == 2
