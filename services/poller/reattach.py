"""Re-attaching to runs' event streams (`GET /v1/workflow/{id}/events`, with the run's own user and the
state snapshot), for two reasons:

- **Capture from anywhere.** A run paused at a Human Input node whose form we never saw (it was
  started in Dify's web app, by another service, on a schedule): the snapshot replays
  `human_input_required` with the form token (DIFY.md, fixture 18), and the form opens as a
  `dify-form` checkpoint exactly as for a run started through the gateway. A run started by a
  console account has no end user to re-attach with: that reason is recorded and shown instead.
  One re-attach per paused run per HITL_CAPTURE_RETRY_S, inside the app's rate limit.
- **Lost streams.** A streamed run still running whose stream nobody reads any more (the process
  reading it was killed): the re-attach replays its nodes and follows it live to its end, so its node
  timeline completes. A reader says it is alive by heartbeats (shared/runstarter.py StreamWatch).
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection
from typing import Any

from services.poller import metrics
from services.poller.runbook import RunBook
from shared.broker.router import in_store
from shared.dify import DifyClient, DifyError, DifyNotFound
from shared.logs import get_logger
from shared.runstarter import EventTee, RunStarter, event_dict
from shared.store import run_tracking
from shared.store import runs as store
from shared.store.rows import RunRow

log = get_logger(__name__)
# A replayed form's content is Dify's unrendered template (fixture 18); GET form renders it.
UNRENDERED = re.compile(r"\{\{#(?!\$output\.)")
CLAIMS_PER_TICK = 20


class ReattachBook(RunBook):
    """The store side: claims (one poller, one re-attach per interval) and what a capture found."""

    def due_captures(self, apps: Collection[str], limit: int) -> list[RunRow]:
        with self.db.write() as conn:
            return run_tracking.claim_captures(conn, time.time(), self.settings.capture_retry_s, apps, limit)

    def lost_streams(self, apps: Collection[str], limit: int) -> list[RunRow]:
        with self.db.write() as conn:
            return run_tracking.claim_lost_streams(conn, time.time(), self.settings.stream_lost_after_s,
                                                   self.settings.stream_reattach_max, apps, limit)

    def capture_failed(self, app: str, run_id: str, state: str, detail: str) -> None:
        """The re-attach did not bring the form (tried again next interval, unless `unavailable`)."""
        with self.db.write() as conn:
            run = store.get(conn, app, run_id)
            if run is not None and run["status"] == "paused" and run["capture"] != "captured":
                self.capture_state(conn, run, state, detail)

    def remember_user(self, app: str, run_id: str, user: str) -> None:
        with self.db.write() as conn:
            store.update_run(conn, app, run_id, user=user)


class Reattacher:
    """The async side, run by the poller's background loops."""

    def __init__(self, recorder: ReattachBook, broker: Any, clients: dict[str, DifyClient], starter: RunStarter,
                 tick_s: float = 1.0) -> None:
        self.recorder, self.broker, self.clients, self.starter = recorder, broker, clients, starter
        self.settings = recorder.settings
        self.tick_s = tick_s
        self.capturing = asyncio.Semaphore(4)
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def sweep_captures(self) -> int:
        runs = await in_store(self.broker, self.recorder.due_captures, list(self.clients), CLAIMS_PER_TICK)
        for run in runs:
            self._spawn(self.capture(run))
        return len(runs)

    async def sweep_lost_streams(self) -> int:
        runs = await in_store(self.broker, self.recorder.lost_streams, list(self.clients), CLAIMS_PER_TICK)
        for run in runs:
            self._spawn(self.follow_again(run))
        return len(runs)

    # ------------------------------------------------------------------ capture from anywhere
    async def capture(self, run: RunRow) -> None:
        app, run_id = run["app"], run["id"]
        client = self.clients[app]
        user: str | None = None
        async with self.capturing:
            try:
                user = await self._user(client, run)
                if user is None:
                    await self._failed(run, "failed", "Dify knows no end user for this run (no logs row with a "
                                                      "session id, no sys.user_id): it cannot be re-attached")
                    return
                forms = await self._replay(client, run_id, user)
            except DifyNotFound as exc:
                await self._failed(run, "failed", f"Dify answered 404 to a re-attach as user {user!r}: a run started "
                                                  f"in Dify's debugger, or by another user ({exc.message})")
                return
            except DifyError as exc:  # unavailable, 5xx, 429: the next interval tries again
                await self._failed(run, "failed", f"re-attach failed: {exc.code}: {exc.message}"[:300])
                return
        if forms == 0:
            await self._failed(run, "failed", "the re-attach replayed no form of the paused run")
        else:
            metrics.form_captures.labels(app=app, outcome="captured").inc()
            log.info("form.captured_by_reattach", run_id=run_id, app=app, forms=forms)

    async def _user(self, client: DifyClient, run: RunRow) -> str | None:
        user = self.recorder.user_of(run)
        if user is None:
            record = await client.get_run(run["id"], lane="direct")
            user = self.recorder.user_of(run, record.inputs)
            if user is not None:
                await in_store(self.broker, self.recorder.remember_user, run["app"], run["id"], user)
        return user

    async def _replay(self, client: DifyClient, run_id: str, user: str) -> int:
        """Re-attach with the snapshot and tee what Dify replays (source `poller`: what Dify said, so its
        forms open checkpoints); the stream ends at `workflow_paused`. Returns the forms replayed."""
        tee = EventTee(self.broker, self.settings, client.app.name, "poller", user)
        forms = 0
        try:
            async with client.events(run_id, user, include_state_snapshot=True,
                                     idle_limit_s=self.settings.stream_idle_limit_s) as stream:
                async for event in stream:
                    data = event_dict(event)
                    if event.event == "human_input_required" and event.data.get("form_token"):
                        data = await self._rendered(client, data)
                        forms += 1
                    await tee.event(run_id, data)
        finally:
            tee.close()
        return forms

    @staticmethod
    async def _rendered(client: DifyClient, event: dict[str, Any]) -> dict[str, Any]:
        """The replayed form shows Dify's template; the form itself (GET form) shows it filled in."""
        data = event.get("data") or {}
        content = data.get("form_content") or ""
        if not UNRENDERED.search(content):
            return event
        try:
            form = await client.form_get(data["form_token"])
        except DifyError:
            return event  # decided or expired meanwhile: the raw template still says what it is about
        return {**event, "data": {**data, "form_content": form.form_content or content}}

    async def _failed(self, run: RunRow, state: str, detail: str) -> None:
        metrics.form_captures.labels(app=run["app"], outcome=state).inc()
        log.info("form.capture_failed", run_id=run["id"], app=run["app"], state=state, detail=detail[:200])
        await in_store(self.broker, self.recorder.capture_failed, run["app"], run["id"], state, detail)

    # ------------------------------------------------------------------ lost streams
    async def follow_again(self, run: RunRow) -> None:
        """Re-attach to a running run whose stream lost its reader: the snapshot replays its nodes so
        far (applied idempotently), then it is followed live to its end."""
        client = self.clients[run["app"]]
        user = self.recorder.user_of(run) or "hitl"
        tee = EventTee(self.broker, self.settings, run["app"], "poller", user)
        metrics.stream_reattaches.labels(app=run["app"]).inc()
        log.info("stream.reattach_lost", run_id=run["id"], app=run["app"], attempt=run["reattach_count"])
        await self.starter.reattach(client, tee, run["id"], continue_on_pause=False, snapshot=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
