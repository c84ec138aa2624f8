"""poller wiring: consumes run.track / run.event / checkpoint events / stream heartbeats; learns live
runs' statuses from each app's logs listing (sweep.py) and polls by id only what the listing cannot
tell (polls.py); captures the forms of runs paused elsewhere and re-attaches lost streams
(reattach.py); submits decided Dify forms; starts continuation runs for decided detached checkpoints.

The schedules are in the store (runs.next_poll_at + a lease, an app's sweep lease, capture and
re-attach claims), never only in this process's memory: a restarted or second poller picks up
exactly where this one stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from services.poller import metrics
from services.poller.reattach import Reattacher
from services.poller.recorder import Recorder
from services.poller.sweep import ListingSweep, PassStats
from shared.broker import Outbound, Reject, RetryLater, publish_all
from shared.broker.router import Context, Handlers, in_store
from shared.broker.signing import Verifier
from shared.dify import DifyAuthError, DifyBadRequest, DifyClient, DifyError, DifyForbidden, DifyFormError, DifyNotFound
from shared.logs import get_logger
from shared.models import CheckpointEvent, EventType, FormDelivery, FormReport, RunEvent, RunTrack, StreamsAlive
from shared.runstarter import EventTee, RunStarter
from shared.settings import Settings
from shared.store import Database
from shared.store.rows import RunRow
from shared.topology import FORM_DELIVER, FORM_REPORT, RUN_EVENT, RUN_STREAMS_ALIVE, RUN_TRACK

log = get_logger(__name__)
handlers = Handlers()
LOST_STREAM_CHECK_S = 5.0


def next_pass_in(settings: Settings, stats: PassStats | None, last: float) -> float:
    """Seconds from the start of one pass over an app's listing to the next: HITL_SWEEP_INTERVAL_S
    while its live runs change, doubling to HITL_DISCOVERY_INTERVAL_S while nothing does; that
    interval with nothing live, after a failed pass, or in `per_run` mode (the listing only discovers)."""
    slowest = settings.discovery_interval_s
    if stats is None or not stats.live or settings.status_source != "listing":
        return slowest
    return settings.sweep_interval_s if stats.changed else min(max(last, settings.sweep_interval_s) * 2, slowest)


@dataclass
class _RunLock:
    lock: asyncio.Lock
    users: int = 0


class PollerService:
    def __init__(self, settings: Settings, db: Database, broker: Any, verifier: Verifier) -> None:
        self.settings = settings
        self.broker = broker
        self.recorder = Recorder(db, settings)
        self.owner = f"{socket.gethostname()}-{os.getpid()}"
        self.clients = {a.name: DifyClient(a, rate_per_s=a.rate_per_s or settings.dify_rate_per_s,
                                           max_concurrency=settings.dify_max_concurrency,
                                           timeout_s=settings.dify_timeout_s, direct_share=settings.direct_poll_share)
                        for a in settings.apps if a.watched}
        self.starter = RunStarter(broker, settings)
        self.sweeps = {app: ListingSweep(app, client, self.recorder, broker, self.owner)
                       for app, client in self.clients.items()}
        self.reattacher = Reattacher(self.recorder, broker, self.clients, self.starter)
        self.inflight: set[asyncio.Task[None]] = set()
        self.run_locks: dict[tuple[str, str], _RunLock] = {}
        self._stop = asyncio.Event()
        self.router = handlers.bind(self, broker, settings.names, verifier)

    # ------------------------------------------------------------------ handlers
    @handlers.on("runs", RUN_TRACK, RunTrack, store=True)
    def on_track(self, msg: RunTrack, ctx: Context) -> list[Outbound]:
        if msg.app not in self.clients:
            raise Reject(f"app {msg.app!r} has no Dify connection configured (dify_base_url, dify_api_key)")
        return self.recorder.track(msg)

    @handlers.on("runs", RUN_EVENT, RunEvent)
    async def on_run_event(self, msg: RunEvent, ctx: Context) -> list[Outbound]:
        async with self._in_order(msg.app, msg.workflow_run_id):
            return await in_store(self.broker, self.recorder.on_event, msg)

    @handlers.on("runs", RUN_STREAMS_ALIVE, StreamsAlive, store=True)
    def on_streams_alive(self, msg: StreamsAlive, ctx: Context) -> list[Outbound]:
        return self.recorder.streams_alive(msg)

    @handlers.on("runs", EventType.opened.value, CheckpointEvent, store=True)
    def on_checkpoint_opened(self, ev: CheckpointEvent, ctx: Context) -> list[Outbound]:
        """Every checkpoint's run is tracked (when its app's Dify can be reached)."""
        cp = ev.checkpoint
        if cp.get("app") not in self.clients:
            return []
        track = RunTrack(app=cp["app"], workflow_run_id=cp["workflow_run_id"], source="checkpoint",
                         user=cp.get("user"))
        return self.recorder.track(track)

    @handlers.on("runs", EventType.resolved.value, CheckpointEvent)
    async def on_checkpoint_resolved(self, ev: CheckpointEvent, ctx: Context) -> list[Outbound]:
        """A decided detached checkpoint starts its app's continuation run."""
        cp = ev.checkpoint
        if cp.get("app") in self.clients and cp.get("mode") == "detached":
            await self.start_continuation(cp)
        return []

    @handlers.on("runs", FORM_DELIVER, FormDelivery)
    async def on_form_deliver(self, msg: FormDelivery, ctx: Context) -> list[Outbound]:
        await self.deliver_form(msg)
        return []

    @contextlib.asynccontextmanager
    async def _in_order(self, app: str, run_id: str) -> AsyncIterator[None]:
        """Events of one run are applied one at a time, in delivery order (asyncio.Lock is FIFO and
        deliveries start in the order RabbitMQ sent them), while different runs go in parallel."""
        entry = self.run_locks.setdefault((app, run_id), _RunLock(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                self.run_locks.pop((app, run_id), None)

    async def deliver_form(self, msg: FormDelivery) -> None:
        """Submit a decided Dify form, at least once; report what Dify said. The token is a secret:
        it is never logged (only the checkpoint and run ids are)."""
        structlog.contextvars.bind_contextvars(run_id=msg.workflow_run_id, checkpoint_id=msg.checkpoint_id)
        client = self.clients.get(msg.app)
        if client is None:
            raise Reject(f"app {msg.app!r} has no Dify connection configured")
        report = dict(app=msg.app, workflow_run_id=msg.workflow_run_id, checkpoint_id=msg.checkpoint_id)
        # The run's own user keeps Dify's records truthful (Dify accepts any user on a submit, fixture 18),
        # and a `local_file` input was uploaded as that user.
        user = await in_store(self.broker, self.recorder.run_user, msg.app, msg.workflow_run_id) or msg.user
        try:
            await client.form_submit(msg.form_token, msg.inputs, msg.action, user)
            outcome, detail = "delivered", None
        except DifyFormError as exc:
            # 412 "submitted" counts as delivered only once the run is seen moving on (the resume check).
            outcome = "already_submitted" if exc.code == "human_input_form_submitted" else "expired"
            detail = exc.message
        except (DifyNotFound, DifyBadRequest, DifyAuthError, DifyForbidden) as exc:
            outcome, detail = "failed", f"{exc.status} {exc.code}: {exc.message}"
        except DifyError as exc:  # unavailable, 5xx, 429: try again later; the decision is kept
            raise RetryLater(f"form submit: {exc.code}", delay_s=5) from exc
        if detail:  # Dify's 404 text quotes the request URI, which holds the token: a secret
            detail = detail.replace(msg.form_token, "<form token>")
        log.info("form.delivered" if outcome in ("delivered", "already_submitted") else "form.not_delivered",
                 outcome=outcome, action=msg.action)
        await self.broker.publish(self.settings.names.commands, FORM_REPORT,
                                  FormReport(outcome=outcome, detail=detail, **report).to_bytes())
        if outcome in ("delivered", "already_submitted"):
            await in_store(self.broker, self.recorder.poll_soon, msg.app, msg.workflow_run_id)
            self._follow_resumption(client, msg, user)

    def _follow_resumption(self, client: DifyClient, msg: FormDelivery, user: str) -> None:
        """Re-attach to the resumed run's stream so its nodes are recorded live; polling backs it up."""
        async def follow() -> None:
            tee = EventTee(self.broker, self.settings, msg.app, "poller", user)
            await self.starter.reattach(client, tee, msg.workflow_run_id, continue_on_pause=True, snapshot=True)

        task = asyncio.create_task(follow())
        self.starter.readers.add(task)
        task.add_done_callback(self.starter.readers.discard)

    async def start_continuation(self, cp: dict[str, Any]) -> None:
        app = self.settings.app(cp["app"])
        target = self.settings.app(app.continuation_app) if app and app.continuation_app else None
        if target is None or target.name not in self.clients:
            log.warning("continuation.not_configured", checkpoint_id=cp["id"], app=cp["app"])
            return
        if await in_store(self.broker, self.recorder.continuation_exists, cp["id"]):
            return  # redelivered: one continuation per checkpoint
        output = cp.get("output")
        inputs = {"checkpoint_id": cp["id"], "action": cp["action"], "feedback": cp.get("feedback") or "",
                  "output": output if isinstance(output, str) else json.dumps(output),
                  "workflow_run_id": cp["workflow_run_id"], "node_id": cp["node_id"]}
        started = await self.starter.start(self.clients[target.name], target.name, inputs,
                                           user=cp.get("user") or "hitl", source="poller", continuation_of=cp["id"])
        log.info("continuation.started", checkpoint_id=cp["id"], run_id=started.workflow_run_id, app=target.name)

    # ------------------------------------------------------------------ polls by id
    async def run_polling(self) -> None:
        while not self._stop.is_set():
            free = self.settings.poll_max_inflight - len(self.inflight)
            if free > 0:
                try:
                    for run in await in_store(self.broker, self.recorder.due, self.owner, free):
                        task = asyncio.create_task(self.poll_one(run))
                        self.inflight.add(task)
                        task.add_done_callback(self.inflight.discard)
                except Exception as exc:  # store hiccup: the schedule is in the store, try again next tick
                    log.warning("poll.claim_failed", error=f"{type(exc).__name__}: {exc}")
            await self._sleep(self.settings.poll_tick_s)

    async def poll_one(self, run: RunRow) -> None:
        client = self.clients.get(run["app"])
        try:
            if client is None:
                raise DifyError(0, "no_client", f"app {run['app']} has no Dify connection")
            record = await client.get_run(run["id"], lane="direct")
            await publish_all(self.broker, await in_store(self.broker, self.recorder.on_poll, run, record, self.owner))
        except DifyError as exc:
            log.info("poll.failed", run_id=run["id"], error=str(exc)[:200])
            await in_store(self.broker, self.recorder.on_poll_error, run, exc, self.owner,
                           isinstance(exc, DifyNotFound))
        except Exception as exc:  # never lose the run: its lease expires and it is polled again
            log.warning("poll.crashed", run_id=run["id"], error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ the logs listing
    async def run_sweep(self, app: str) -> None:
        """Pass after pass over one app's listing (discovery included): every HITL_SWEEP_INTERVAL_S
        while its runs change, backing off (doubling) to HITL_DISCOVERY_INTERVAL_S while nothing does
        (a few runs paused for days must not cost a request every two seconds), and every
        HITL_DISCOVERY_INTERVAL_S with nothing live or in `per_run` mode (the listing only discovers)."""
        sweep = self.sweeps[app]
        interval = self.settings.sweep_interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            stats = None
            try:
                stats = await sweep.one_pass()
                if stats is not None:
                    metrics.listing_pass.labels(app=app).observe(stats.seconds)
                    metrics.listing_changes.labels(app=app).inc(stats.changed)
                    if stats.changed or stats.unseen or stats.by_id:
                        log.info("sweep.pass", app=app, pages=stats.pages, rows=stats.rows, changed=stats.changed,
                                 live=stats.live, windows=stats.windows, by_id=stats.by_id, unseen=stats.unseen,
                                 seconds=round(stats.seconds, 2))
            except Exception as exc:  # Dify down: the watermark stays, the next pass catches up
                log.info("sweep.failed", app=app, error=f"{type(exc).__name__}: {exc}"[:200])
            interval = next_pass_in(self.settings, stats, interval)
            await self._sleep(max(0.0, started + interval - time.monotonic()))
        with contextlib.suppress(Exception):
            await sweep.release()

    async def discover(self, app: str, client: DifyClient) -> int:
        """One pass of the app's listing now (tests, `hitl`-driven refreshes); how many runs it changed."""
        stats = await self.sweeps[app].one_pass()
        return stats.changed if stats else 0

    # ------------------------------------------------------------------ re-attaches
    async def run_reattaches(self) -> None:
        """Captures of paused runs' forms (every tick), re-attaches of lost streams (every few seconds)."""
        last_lost = 0.0
        while not self._stop.is_set():
            try:
                await self.reattacher.sweep_captures()
                if time.monotonic() - last_lost >= min(LOST_STREAM_CHECK_S, self.settings.stream_heartbeat_s):
                    last_lost = time.monotonic()
                    await self.reattacher.sweep_lost_streams()
            except Exception as exc:  # store hiccup: the claims are in the store, try again next tick
                log.warning("reattach.claim_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            await self._sleep(max(self.settings.poll_tick_s, 0.5))

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.run_polling(), self.run_reattaches(), *(self.run_sweep(app) for app in self.clients)]

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=10)
        await self.reattacher.close()
        await self.starter.close()
        for client in self.clients.values():
            await client.aclose()
