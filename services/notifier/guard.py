"""Keeping one platform's trouble to itself.

A platform that is paused (it answered 429 with `Retry-After`, or failed several times in a row) is
not called: its jobs go back to a delay queue at once (an uncounted wait) and the consumer moves on
to the next job — another channel, another checkpoint. Each channel has `concurrency` call slots and
WAIT_PLACES × as many places to wait for one; a job that finds both full (the platform is slow or
hangs) goes back to the broker for a second, so one platform never holds more than
(1 + WAIT_PLACES) × `concurrency` of the consumer's prefetch (the notifier's prefetch is larger than
that: NOTIFIER_PREFETCH). Pauses and slots are per channel; for webhooks, whose receivers are
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
WAIT_PLACES = 3
NOTIFIER_PREFETCH = 256


class ChannelGuard:
    def __init__(self, concurrency: int, clock=time.monotonic) -> None:
        self.concurrency = concurrency
        self.clock = clock
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
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
    async def slot(self, key: str) -> AsyncIterator[bool]:
        """One of the `concurrency` call slots of a channel (or receiver): True once taken; False at
        once when the slots and the places to wait for one are all taken."""
        sem = self._slots.setdefault(key, asyncio.Semaphore(self.concurrency))
        if sem.locked() and self._waiting.get(key, 0) >= WAIT_PLACES * self.concurrency:
            yield False
            return
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            await sem.acquire()
        finally:
            self._waiting[key] -= 1
        try:
            yield True
        finally:
            sem.release()
