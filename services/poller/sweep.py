"""One app's listing sweep: its live runs' statuses learned 100 at a time from GET /v1/workflows/logs.

A pass, under the app's sweep lease (one poller at a time):

1. **Head** — the rows created since the newest one seen (minus an overlap), newest first, page by page
   until `has_more` is false: new runs are discovered, live ones compared. Rows that arrive during
   the walk push older rows down a page; those are met again and skipped, never missed.
2. **Windows** — the live runs created before the head, cut into time windows of at most
   HITL_SWEEP_WINDOW_RUNS runs and HITL_SWEEP_WINDOW_S seconds (listing.plan_windows). Each window is
   closed (no row arrives in it any more), so its pages are stable: page 1 says how many rows it
   holds, and when walking them would cost more requests than polling its live runs by id, those
   are polled by id instead. A live run a walk did not show (cleaned up, another app's key, a
   creation time the listing does not share) leaves the listing and is polled by id from then on.

A run whose row shows a new status is updated from the row at once; a run that ended is polled by
id once more for its outputs. Pages cost (runs created in the live window ÷ 100) requests a pass,
plus one per change, instead of one per live run. While a pass walks, polls by id get at most
HITL_DIRECT_POLL_SHARE of the app's rate (AppLimiter lanes).
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.poller.listing import MARGIN_S, ListingBook, Window
from shared.broker import publish_all
from shared.broker.router import in_store
from shared.dify import DifyClient
from shared.dify.models import LogPage
from shared.logs import get_logger

log = get_logger(__name__)
PAGE = 100
# Rows of runs created this recently may still be written (a row appears as its run starts, stamped to
# the second): such runs are left to the head walk, and every window is closed.
SETTLE_S = 10
RENEW_EVERY_PAGES = 100


def at(ts: float, up: bool = False) -> datetime:
    """A whole-second bound for Dify's created_at filters (ISO 8601; both ends inclusive)."""
    return datetime.fromtimestamp(math.ceil(ts) if up else math.floor(ts), tz=UTC)


@dataclass
class PassStats:
    pages: int = 0
    rows: int = 0
    changed: int = 0
    windows: int = 0
    live: int = 0
    by_id: int = 0
    unseen: int = 0
    newest: float | None = None
    seconds: float = 0.0
    seen: set[str] = field(default_factory=set, repr=False)


class ListingSweep:
    def __init__(self, app: str, client: DifyClient, book: ListingBook, broker: Any, owner: str) -> None:
        self.app, self.client, self.book, self.broker, self.owner = app, client, book, broker, owner
        self.settings = book.settings

    async def one_pass(self) -> PassStats | None:
        """Walk the head and the live windows once; None when another poller holds the lease."""
        started = time.monotonic()
        if not await in_store(self.broker, self.book.claim_sweep, self.app, self.owner):
            return None
        stats = PassStats()
        async with self.client.sweeping():
            plan_time = time.time()
            mark = await in_store(self.broker, self.book.watermark, self.app)
            head_after = (mark if mark else plan_time - self.settings.discovery_lookback_s) - MARGIN_S
            if self.book.listing:
                head_after = min(head_after, plan_time - SETTLE_S - MARGIN_S)
            await self._walk(stats, at(head_after), None)
            if self.book.listing:
                windows = await in_store(self.broker, self.book.plan, self.app, plan_time - SETTLE_S)
                stats.live = sum(len(w.ids) for w in windows)
                for window in windows:
                    window.ids -= stats.seen  # the head showed them moments ago (e.g. just discovered)
                windows = [w for w in windows if w.ids]
                stats.windows = len(windows)
                for window in windows:
                    if not await in_store(self.broker, self.book.claim_sweep, self.app, self.owner):
                        break  # our lease ran out and another poller holds it now: it walks on
                    await self._window(stats, window)
        if stats.newest and (mark is None or stats.newest > mark):
            await in_store(self.broker, self.book.set_watermark, self.app, stats.newest)
        stats.seconds = time.monotonic() - started
        return stats

    async def _window(self, stats: PassStats, window: Window) -> None:
        first = await self._page(stats, 1, at(window.after), at(window.before, up=True))
        pages = math.ceil(first.total / PAGE)
        seen = {e.workflow_run.id for e in first.data}
        if pages > len(window.ids):  # a few live runs among many finished ones: cheaper by id
            by_id = window.ids - seen
            stats.by_id += len(by_id)
            await in_store(self.broker, self.book.poll_by_id, self.app, by_id)
            return
        if first.has_more:
            seen |= await self._walk(stats, at(window.after), at(window.before, up=True), start=2)
        unseen = window.ids - seen
        if unseen:
            stats.unseen += len(unseen)
            log.info("sweep.unseen", app=self.app, runs=len(unseen))
            await in_store(self.broker, self.book.unseen, self.app, unseen)

    async def _walk(self, stats: PassStats, after: datetime, before: datetime | None, *,
                    start: int = 1) -> set[str]:
        """Pages `start`, `start`+1, … until the listing says there is no more; each page is applied while
        the next one is fetched."""
        seen: set[str] = set()
        applying: asyncio.Task[None] | None = None
        page = start
        try:
            while True:
                result = await self._page(stats, page, after, before, apply=False)
                if applying is not None:
                    await applying
                applying = asyncio.create_task(self._apply(stats, result))
                seen |= {e.workflow_run.id for e in result.data}
                if not result.has_more or not result.data:
                    break
                page += 1
                if page % RENEW_EVERY_PAGES == 0:  # a long head (discovery after a while away) keeps the lease
                    await in_store(self.broker, self.book.claim_sweep, self.app, self.owner)
        finally:
            if applying is not None:
                await applying
        return seen

    async def _page(self, stats: PassStats, page: int, after: datetime, before: datetime | None,
                    apply: bool = True) -> LogPage:
        result = await self.client.logs(page=page, limit=PAGE, created_at_after=after, created_at_before=before)
        stats.pages += 1
        if apply:
            await self._apply(stats, result)
        return result

    async def _apply(self, stats: PassStats, result: LogPage) -> None:
        fresh = [e for e in result.data if e.workflow_run.id not in stats.seen]  # a row met again on a later page
        stats.seen.update(e.workflow_run.id for e in fresh)
        stats.rows += len(fresh)
        for entry in fresh:
            created = entry.workflow_run.created_at
            if created is not None and (stats.newest is None or float(created) > stats.newest):
                stats.newest = float(created)
        out, changed = await in_store(self.broker, self.book.on_listed, self.app, fresh)
        stats.changed += changed
        await publish_all(self.broker, out)

    async def release(self) -> None:
        await in_store(self.broker, self.book.release_sweep, self.app, self.owner)
