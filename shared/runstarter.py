"""Start a Dify run streaming and tee its events to the broker (run.track, then run.event per event).

Used by ingest (POST /v1/runs, re-runs) and the poller (continuations of detached checkpoints). The
caller gets the run and task ids as soon as Dify announces the run; the stream is read to its end in
the background. If the stream is lost, one re-attach (`/v1/workflow/{id}/events`) is tried; after
that the poller's polling of the tracked run finds the final status — nothing depends on the stream.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from shared.broker import Broker
from shared.dify import DifyClient, DifyError
from shared.dify.models import CHUNK_EVENTS, StreamEvent
from shared.logs import get_logger
from shared.models import RunEvent, RunTrack, StreamsAlive
from shared.settings import Settings
from shared.topology import RUN_EVENT, RUN_STREAMS_ALIVE, RUN_TRACK

log = get_logger(__name__)
ENDING = {"workflow_finished", "workflow_paused", "error"}


@dataclass
class StartedRun:
    workflow_run_id: str
    task_id: str | None


class RunNotStarted(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamWatch:
    """The live run streams this process is reading, announced every HITL_STREAM_HEARTBEAT_S in one
    StreamsAlive message (a few per process, whatever the number of streams): a held checkpoint keeps
    a stream silent but for pings for minutes, and the poller must tell such a stream from one whose
    reader died (it re-attaches to those). One per broker, created on first use; it beats only while
    streams are open."""

    _by_broker: dict[int, StreamWatch] = {}

    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker, self.names, self.interval_s = broker, settings.names, settings.stream_heartbeat_s
        self.active: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task | None = None

    @classmethod
    def of(cls, broker: Broker, settings: Settings) -> StreamWatch:
        watch = cls._by_broker.get(id(broker))
        if watch is None or watch.broker is not broker:
            watch = cls._by_broker[id(broker)] = cls(broker, settings)
        return watch

    def add(self, app: str, run_id: str) -> None:
        key = (app, run_id)
        self.active[key] = self.active.get(key, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._beat())

    def remove(self, app: str, run_id: str) -> None:
        key = (app, run_id)
        left = self.active.get(key, 0) - 1
        if left > 0:
            self.active[key] = left
        else:
            self.active.pop(key, None)

    async def _beat(self) -> None:
        while self.active:
            await asyncio.sleep(self.interval_s)
            streams = sorted(self.active)
            for i in range(0, len(streams), 1000):
                msg = StreamsAlive(streams=streams[i:i + 1000])
                try:
                    await self.broker.publish(self.names.commands, RUN_STREAMS_ALIVE, msg.to_bytes(),
                                              message_id=msg.id)
                except Exception as exc:  # the next beat tries again; a missed one is what the margin is for
                    log.info("streams.heartbeat_failed", error=f"{type(exc).__name__}: {exc}"[:200])


class EventTee:
    """Publishes one run's events in order (one publisher per stream keeps their order), and says the
    stream is being read (StreamWatch) from its first event until an ending event or close()."""

    def __init__(self, broker: Broker, settings: Settings, app: str, source: str, user: str | None) -> None:
        self.broker, self.names = broker, settings.names
        self.app, self.source, self.user = app, source, user
        self.watch = StreamWatch.of(broker, settings)
        self._watching: set[str] = set()

    async def track(self, run_id: str, task_id: str | None, **link: Any) -> None:
        msg = RunTrack(app=self.app, workflow_run_id=run_id, source=self.source, task_id=task_id, user=self.user,
                       **link)
        await self.broker.publish(self.names.commands, RUN_TRACK, msg.to_bytes(), message_id=msg.id)

    async def event(self, run_id: str, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name in ENDING:
            self._unwatch(run_id)
        elif run_id not in self._watching:
            self._watching.add(run_id)
            self.watch.add(self.app, run_id)
        if name == "ping" or name in CHUNK_EVENTS:
            return  # no state in them; text and reasoning chunks can be large
        msg = RunEvent(app=self.app, workflow_run_id=run_id, source=self.source, event=event, user=self.user)
        await self.broker.publish(self.names.commands, RUN_EVENT, msg.to_bytes(), message_id=msg.id)

    def close(self) -> None:
        """The stream is no longer read (it ended, or was cut)."""
        for run_id in list(self._watching):
            self._unwatch(run_id)

    def _unwatch(self, run_id: str) -> None:
        if run_id in self._watching:
            self._watching.discard(run_id)
            self.watch.remove(self.app, run_id)


def event_dict(event: StreamEvent) -> dict[str, Any]:
    return event.model_dump(exclude_none=True)


class RunStarter:
    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self.readers: set[asyncio.Task] = set()

    async def start(self, client: DifyClient, app: str, inputs: dict[str, Any], *, user: str, source: str,
                    workflow_id: str | None = None, **link: Any) -> StartedRun:
        """Start the run; returns once Dify has announced it (workflow_started)."""
        tee = EventTee(self.broker, self.settings, app, source, user)
        stream = client.stream_run(inputs, user, workflow_id=workflow_id,
                                   idle_limit_s=self.settings.stream_idle_limit_s)
        events = None
        try:
            await stream.open()
            events = stream.events().__aiter__()
            first = await events.__anext__()
        except StopAsyncIteration:
            await stream.aclose()
            raise RunNotStarted("stream_ended", "Dify closed the stream before announcing the run") from None
        except DifyError as exc:
            await stream.aclose()
            raise RunNotStarted(exc.code, exc.message) from exc
        if first.event == "error" or not first.workflow_run_id:
            await stream.aclose()
            raise RunNotStarted(first.code or "dify_error", first.message or f"Dify answered {first.event}")
        started = StartedRun(first.workflow_run_id, first.task_id)
        await tee.track(started.workflow_run_id, started.task_id, **link)
        await tee.event(started.workflow_run_id, event_dict(first))
        reader = asyncio.create_task(self._read_rest(client, stream, events, tee, started, first))
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)
        return started

    async def _read_rest(self, client, stream, events, tee: EventTee, started: StartedRun, first) -> None:
        run_id, last = started.workflow_run_id, first.event
        try:
            async for event in events:
                await tee.event(run_id, event_dict(event))
                last = event.event
        except Exception as exc:  # a lost stream (or broker): fall back to a re-attach, then polling
            log.info("stream.lost", run_id=run_id, error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            await stream.aclose()
        if last not in ENDING:
            await self.reattach(client, tee, run_id)
        tee.close()

    async def reattach(self, client: DifyClient, tee: EventTee, run_id: str, continue_on_pause: bool = False,
                       snapshot: bool = False) -> None:
        """Follow a run's stream again; `snapshot` replays the node states first (a resumed run may
        be far along already when we attach), which the recorder applies idempotently."""
        try:
            async with client.events(run_id, tee.user or "hitl", continue_on_pause=continue_on_pause,
                                     include_state_snapshot=snapshot,
                                     idle_limit_s=self.settings.stream_idle_limit_s) as s:
                async for event in s:
                    await tee.event(run_id, event_dict(event))
            log.info("stream.reattached", run_id=run_id)
        except Exception as exc:  # polling will still find the final status
            log.info("stream.reattach_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            tee.close()

    async def close(self) -> None:
        for task in list(self.readers):
            task.cancel()
        if self.readers:
            await asyncio.wait(self.readers, timeout=5)
