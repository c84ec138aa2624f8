"""Keeping one platform's trouble to itself.

Every job waits in the broker, not in this process: when a platform is paused (it answered 429 with
`Retry-After`, or failed several times in a row) or all of its slots are taken by slow calls, a job
for it goes back to a delay queue at once (an uncounted wait) and the consumer moves on to the next
job — another channel, another checkpoint. Pauses are per channel; for webhooks, whose receivers are
unrelated to each other, per receiver. This state is per process: another replica learns the same
from its own first refusal.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from services.notifier import metrics

PER_RECEIVER = frozenset({"webhook"})
FAILURES_BEFORE_PAUSE = 3
MAX_FAILURE_PAUSE_S = 60.0


class ChannelGuard:
    def __init__(self, concurrency: int, clock=time.monotonic) -> None:
        self.concurrency = concurrency
        self.clock = clock
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._paused_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    @staticmethod
    def key(channel: str, address_key: str) -> str:
        return f"{channel}:{address_key}" if channel in PER_RECEIVER else channel

    def paused_for(self, key: str) -> float:
        """Seconds this channel (or receiver) is still paused; 0 when it may be called."""
        until = self._paused_until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            self._paused_until.pop(key, None)
            self._gauge(key)
            return 0.0
        return left

    def failed(self, key: str, retry_after_s: float | None) -> None:
        """A call failed: honour the platform's Retry-After; after repeated failures back off."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        pause = retry_after_s or 0.0
        if not pause and count >= FAILURES_BEFORE_PAUSE:
            pause = min(MAX_FAILURE_PAUSE_S, 2.0 ** (count - FAILURES_BEFORE_PAUSE + 1))
        if pause > 0:
            self._paused_until[key] = max(self._paused_until.get(key, 0.0), self.clock() + pause)
            self._gauge(key)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        if self._paused_until.pop(key, None) is not None:
            self._gauge(key)

    def _gauge(self, key: str) -> None:
        channel = key.split(":", 1)[0]
        paused = any(k.split(":", 1)[0] == channel for k in self._paused_until)
        metrics.paused.labels(channel).set(1 if paused else 0)

    @contextlib.asynccontextmanager
    async def slot(self, channel: str, wait_s: float = 0.2) -> AsyncIterator[bool]:
        """One of the channel's `concurrency` call slots: True when taken within `wait_s`."""
        sem = self._slots.setdefault(channel, asyncio.Semaphore(self.concurrency))
        try:
            await asyncio.wait_for(sem.acquire(), wait_s)
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            sem.release()
