"""Client-side limits per Dify app: Dify has no per-key request-rate limit (DIFY.md), so a burst of
our own polling could swamp it. A token bucket bounds the request rate, a semaphore the number of
requests in flight."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from . import metrics


class TokenBucket:
    """`rate` tokens per second, at most `burst` stored. Waiters are served in arrival order (the
    lock is held while sleeping), so `waits` counts exactly the calls that found the bucket empty.

    `clock` and `sleep` are injectable so tests can run on a fake clock."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.waits = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> bool:
        """Take one token; True when the call had to wait for it."""
        async with self._lock:
            self._refill()
            if self._tokens >= 1 - 1e-9:
                self._tokens -= 1
                return False
            self.waits += 1
            # The tolerance stops a float rounding error from looping on sleeps too short to count.
            while self._tokens < 1 - 1e-9:
                await self._sleep(max((1 - self._tokens) / self.rate, 1e-6))
                self._refill()
            self._tokens -= 1
            return True


class AppLimiter:
    """The bucket and the in-flight semaphore of one app; `async with limiter:` around each request.

    Requests of the `direct` lane (the poller's one-by-one polls) take at most `direct_share` of the
    rate while a listing sweep of the app is walking (`sweeping`): a sweep page brings 100 runs'
    statuses, a direct poll one, so the pages must not queue behind a backlog of polls. With no
    sweep walking, every request shares the whole rate."""

    def __init__(self, app: str, rate_per_s: float = 10, max_concurrency: int = 8, burst: float | None = None,
                 bucket: TokenBucket | None = None, direct_share: float = 1.0) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not 0 < direct_share <= 1:
            raise ValueError("direct_share must be in (0, 1]")
        self.app = app
        self.bucket = bucket or TokenBucket(rate_per_s, burst)
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.direct = TokenBucket(self.bucket.rate * direct_share, 1) if direct_share < 1 else None
        self.sweeping = 0  # listing walks in progress

    @property
    def waits(self) -> int:
        return self.bucket.waits

    async def lane(self, lane: str | None) -> None:
        """Wait for the lane's own share first (outside the semaphore: a waiting poll holds no slot)."""
        if lane == "direct" and self.direct is not None and self.sweeping:
            await self.direct.acquire()

    async def __aenter__(self) -> AppLimiter:
        # A slot first, then the token: a token taken while waiting for a slot would be spent later,
        # all at once when a slow Dify catches up, and the rate on the wire would exceed the limit.
        await self.semaphore.acquire()
        try:
            if await self.bucket.acquire():
                metrics.ratelimit_waits.labels(app=self.app).inc()
        except BaseException:
            self.semaphore.release()
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.semaphore.release()
