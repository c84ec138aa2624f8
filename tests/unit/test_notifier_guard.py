"""The guard that keeps one platform's trouble to itself (services/notifier/guard.py)."""
from __future__ import annotations

import asyncio

from services.notifier.guard import WAIT_PLACES, ChannelGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_pauses_the_channel_until_it_is_over_and_a_success_resumes_it():
    clock = Clock()
    guard = ChannelGuard(4, clock=clock)
    guard.failed("slack", 20.0)
    assert guard.paused_for("slack") == 20.0 and guard.paused_for("feishu") == 0
    clock.now += 15
    assert guard.paused_for("slack") == 5.0
    clock.now += 6
    assert guard.paused_for("slack") == 0
    guard.failed("slack", 20.0)
    guard.succeeded("slack")
    assert guard.paused_for("slack") == 0


def test_repeated_failures_without_retry_after_back_off_and_stay_under_a_minute():
    clock = Clock()
    guard = ChannelGuard(4, clock=clock)
    guard.failed("wecom", None)
    guard.failed("wecom", None)
    assert guard.paused_for("wecom") == 0  # two timeouts may be bad luck
    guard.failed("wecom", None)
    assert guard.paused_for("wecom") == 2.0
    for _ in range(20):
        guard.failed("wecom", None)
    assert guard.paused_for("wecom") == 60.0


def test_webhook_receivers_are_paused_one_by_one_other_channels_as_a_whole():
    assert ChannelGuard.key("webhook", "abc") == "webhook:abc"
    assert ChannelGuard.key("slack", "abc") == "slack"


async def test_a_slow_channel_takes_its_slots_and_waiting_places_then_says_no_at_once():
    guard = ChannelGuard(2)
    release = asyncio.Event()
    taken: list[bool] = []

    async def call() -> None:
        async with guard.slot("dingtalk") as free:
            taken.append(free)
            if free:
                await release.wait()

    tasks = [asyncio.create_task(call()) for _ in range(2 + 2 * WAIT_PLACES + 3)]
    await asyncio.sleep(0.05)
    assert taken == [True, True, False, False, False]  # 2 calling, 2 × WAIT_PLACES waiting, the rest turned away
    async with guard.slot("slack") as other:
        assert other  # another channel is not held up
    release.set()
    await asyncio.gather(*tasks)
    assert taken.count(True) == 2 + 2 * WAIT_PLACES
