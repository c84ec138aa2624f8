"""poller wiring: consumes run.track / run.event / checkpoint events, polls due runs, discovers runs
through Dify's logs, and starts continuation runs for decided detached checkpoints.

The schedule is in the store (runs.next_poll_at + a lease), never only in this process's memory: a
restarted or second poller picks up exactly where this one stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from datetime import datetime, timezone

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from services.poller.recorder import Recorder
from shared.broker import Broker, Delivery, Reject, RetryLater
from shared.dify import (DifyAuthError, DifyBadRequest, DifyClient, DifyError, DifyForbidden, DifyFormError,
                         DifyNotFound)
from shared.logs import get_logger
from shared.models import CheckpointEvent, FormDelivery, FormReport, RunEvent, RunTrack
from shared.outbox import publish_all
from shared.runstarter import EventTee, RunStarter
from shared.settings import Settings
from shared.store import Database
from shared.topology import FORM_DELIVER, FORM_REPORT, RUN_EVENT, RUN_TRACK

log = get_logger(__name__)
DISCOVERY_OVERLAP_S = 5  # Dify's created_at has 1 s resolution and rows appear as runs start


class PollerService:
    def __init__(self, settings: Settings, db: Database, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.recorder = Recorder(db, settings)
        self.owner = f"{socket.gethostname()}-{os.getpid()}"
        self.clients = {a.name: DifyClient(a, rate_per_s=a.rate_per_s or settings.dify_rate_per_s,
                                           max_concurrency=settings.dify_max_concurrency,
                                           timeout_s=settings.dify_timeout_s)
                        for a in settings.apps if a.watched}
        self.starter = RunStarter(broker, settings)
        self.inflight: set[asyncio.Task] = set()
        self.run_locks: dict[str, asyncio.Lock] = {}
        self._stop = asyncio.Event()
        broker.consume(settings.names.runs_queue, self.on_message)

    async def _sync(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.broker.executor, fn, *args)
        except OperationalError as exc:
            raise RetryLater(f"store unavailable: {exc.orig!r}", delay_s=5) from exc

    # ------------------------------------------------------------------ messages
    async def on_message(self, delivery: Delivery) -> None:
        try:
            if delivery.routing_key == RUN_TRACK:
                msg = RunTrack.model_validate_json(delivery.body)
                structlog.contextvars.bind_contextvars(run_id=msg.workflow_run_id)
                if msg.app not in self.clients:
                    raise Reject(f"app {msg.app!r} has no Dify connection configured (dify_base_url, dify_api_key)")
                await publish_all(self.broker, await self._sync(self.recorder.track, msg))
            elif delivery.routing_key == RUN_EVENT:
                msg = RunEvent.model_validate_json(delivery.body)
                structlog.contextvars.bind_contextvars(run_id=msg.workflow_run_id)
                async with self._in_order(msg.workflow_run_id):
                    await publish_all(self.broker, await self._sync(self.recorder.on_event, msg))
            elif delivery.routing_key == FORM_DELIVER:
                await self.deliver_form(FormDelivery.model_validate_json(delivery.body))
            else:
                await self.on_checkpoint_event(CheckpointEvent.model_validate_json(delivery.body))
        except ValidationError as exc:
            raise Reject(f"invalid {delivery.routing_key}: {exc.errors()[0]['msg']}") from None

    @contextlib.asynccontextmanager
    async def _in_order(self, run_id: str):
        """Events of one run are applied one at a time, in delivery order (asyncio.Lock is FIFO and
        deliveries start in the order RabbitMQ sent them), while different runs go in parallel."""
        lock = self.run_locks.setdefault(run_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self.run_locks.pop(run_id, None)

    async def on_checkpoint_event(self, ev: CheckpointEvent) -> None:
        cp = ev.checkpoint
        if cp.get("app") not in self.clients:
            return  # a checkpoint of an app we cannot reach: nothing to watch
        if ev.type == "checkpoint.opened":
            track = RunTrack(app=cp["app"], workflow_run_id=cp["workflow_run_id"], source="checkpoint", user=cp.get("user"))
            await publish_all(self.broker, await self._sync(self.recorder.track, track))
        elif ev.type == "checkpoint.resolved" and cp.get("mode") == "detached":
            await self.start_continuation(cp)

    async def deliver_form(self, msg: FormDelivery) -> None:
        """Submit a decided Dify form, at least once; report what Dify said. The token is a secret:
        it is never logged (only the checkpoint and run ids are)."""
        structlog.contextvars.bind_contextvars(run_id=msg.workflow_run_id, checkpoint_id=msg.checkpoint_id)
        client = self.clients.get(msg.app)
        if client is None:
            raise Reject(f"app {msg.app!r} has no Dify connection configured")
        report = dict(workflow_run_id=msg.workflow_run_id, checkpoint_id=msg.checkpoint_id)
        try:
            await client.form_submit(msg.form_token, msg.inputs, msg.action, msg.user)
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
            await self._sync(self.recorder.poll_soon, msg.workflow_run_id)
            self._follow_resumption(client, msg)

    def _follow_resumption(self, client: DifyClient, msg: FormDelivery) -> None:
        """Re-attach to the resumed run's stream so its nodes are recorded live; polling backs it up."""
        async def follow():
            user = await self._sync(self.recorder.run_user, msg.workflow_run_id) or msg.user
            tee = EventTee(self.broker, self.settings, msg.app, "poller", user)
            await self.starter.reattach(client, tee, msg.workflow_run_id, continue_on_pause=True, snapshot=True)

        task = asyncio.create_task(follow())
        self.starter.readers.add(task)
        task.add_done_callback(self.starter.readers.discard)

    async def start_continuation(self, cp: dict) -> None:
        app = self.settings.app(cp["app"])
        target = self.settings.app(app.continuation_app) if app and app.continuation_app else None
        if target is None or target.name not in self.clients:
            log.warning("continuation.not_configured", checkpoint_id=cp["id"], app=cp["app"])
            return
        if await self._sync(self.recorder.continuation_exists, cp["id"]):
            return  # redelivered: one continuation per checkpoint
        output = cp.get("output")
        inputs = {"checkpoint_id": cp["id"], "action": cp["action"], "feedback": cp.get("feedback") or "",
                  "output": output if isinstance(output, str) else json.dumps(output),
                  "workflow_run_id": cp["workflow_run_id"], "node_id": cp["node_id"]}
        started = await self.starter.start(self.clients[target.name], target.name, inputs, user=cp.get("user") or "hitl",
                                           source="poller", continuation_of=cp["id"])
        log.info("continuation.started", checkpoint_id=cp["id"], run_id=started.workflow_run_id, app=target.name)

    # ------------------------------------------------------------------ polling
    async def run_polling(self) -> None:
        while not self._stop.is_set():
            free = self.settings.poll_max_inflight - len(self.inflight)
            if free > 0:
                try:
                    for run in await self._sync(self.recorder.due, self.owner, free):
                        task = asyncio.create_task(self.poll_one(run))
                        self.inflight.add(task)
                        task.add_done_callback(self.inflight.discard)
                except Exception as exc:  # store hiccup: the schedule is in the store, try again next tick
                    log.warning("poll.claim_failed", error=f"{type(exc).__name__}: {exc}")
            await self._sleep(self.settings.poll_tick_s)

    async def poll_one(self, run: dict) -> None:
        client = self.clients.get(run["app"])
        try:
            if client is None:
                raise DifyError(0, "no_client", f"app {run['app']} has no Dify connection")
            record = await client.get_run(run["id"])
            await publish_all(self.broker, await self._sync(self.recorder.on_poll, run, record, self.owner))
        except DifyError as exc:
            log.info("poll.failed", run_id=run["id"], error=str(exc)[:200])
            await self._sync(self.recorder.on_poll_error, run, exc, self.owner, isinstance(exc, DifyNotFound))
        except Exception as exc:  # never lose the run: its lease expires and it is polled again
            log.warning("poll.crashed", run_id=run["id"], error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ discovery
    async def run_discovery(self) -> None:
        while not self._stop.is_set():
            for app, client in self.clients.items():
                try:
                    await self.discover(app, client)
                except Exception as exc:  # Dify down: the watermark stays, the next round catches up
                    log.info("discovery.failed", app=app, error=f"{type(exc).__name__}: {exc}"[:200])
            await self._sleep(self.settings.discovery_interval_s)

    async def discover(self, app: str, client: DifyClient) -> int:
        mark = await self._sync(self.recorder.watermark, app)
        if mark is None:
            mark = time.time() - self.settings.discovery_lookback_s
        after = datetime.fromtimestamp(max(0, mark - DISCOVERY_OVERLAP_S), tz=timezone.utc)
        newest, found = mark, 0
        async for entry in client.iter_logs(created_at_after=after):
            out = await self._sync(self.recorder.on_discovered, app, entry)
            await publish_all(self.broker, out)
            found += bool(out)
            newest = max(newest, float(entry.workflow_run.created_at or 0))
        if newest > mark:
            await self._sync(self.recorder.set_watermark, app, newest)
        if found:
            log.info("discovery.found", app=app, runs=found)
        return found

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def background(self) -> list:
        return [self.run_polling(), self.run_discovery()]

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=10)
        await self.starter.close()
        for client in self.clients.values():
            await client.aclose()
