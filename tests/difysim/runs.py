"""Run records, and the event fan-out of each run to its SSE streams.

A run has two views that real Dify lets drift apart (fixtures 11 and 16): the *stream* view (what
SSE clients and blocking callers see) and the *record* view (GET run, logs). A stop or the maximum
execution time ends the stream view with `stopped` while the record stays `running` forever.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from .apps import Account, App, EndUser, Workflow, new_id
from .logs_index import AppRunIndex
from .pausing import PausableRun

TERMINAL_EVENTS = ("workflow_finished", "workflow_paused")
CLOSE = None  # sentinel pushed to subscriber queues when their stream must end


# Where a run was started, as Dify's app log says (`created_from`); console debugger runs write no
# app log at all (Dify's _save_workflow_app_log skips them), so they are never listed.
SERVICE_API, INSTALLED_APP, DEBUGGING = "service-api", "installed-app", "debugging"
_creation_order = itertools.count()


class Run(PausableRun):
    def __init__(self, app: App, workflow: Workflow, end_user: EndUser | None, user_inputs: dict, *,
                 account: Account | None = None, created_from: str = SERVICE_API) -> None:
        """A run of an end user (service API) or, with `account`, of a console account."""
        if (end_user is None) == (account is None):
            raise ValueError("a run is started by exactly one end user or account")
        self.index: AppRunIndex | None = None  # the logs index this run is listed in (store.py)
        self.seq = next(_creation_order)  # breaks created_at ties in the logs, newest last
        self.id, self.task_id, self.log_id = new_id(), new_id(), new_id()
        self.app, self.workflow, self.end_user, self.account = app, workflow, end_user, account
        self.created_from = created_from
        self.user_inputs = user_inputs
        self.started_monotonic = time.monotonic()
        self.created_at = int(time.time())
        self.segment_created_at = self.created_at  # moves to the resumption time (pausing.py)
        # The record view (GET run / logs).
        self.status = "running"
        self.outputs: dict = {}
        self.error: str | None = None
        self.total_steps = 0
        self.exceptions_count = 0
        self.finished_at: int | None = None
        self.elapsed_time = 0.0
        # The stream view.
        self.events: list[dict] = []
        # Each listening queue with the events after which its stream closes.
        self.subscribers: dict[asyncio.Queue, frozenset[str]] = {}
        self.stream_ended = False  # workflow_finished sent (normally, or by stop / max execution time)
        self.detached = False  # after a stop: the engine goes on, but nobody hears about it any more
        self.final_payload: dict | None = None  # the record's workflow_finished data, for re-attach
        self.steps = 0  # counted live; the record only takes it at the end
        self.outcome: asyncio.Future = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None
        self.max_execution_time_s: float | None = None
        self.max_execution_timer: asyncio.TimerHandle | None = None
        self.stop_timer: asyncio.TimerHandle | None = None  # a stop call on its way (stop())
        self._init_pausing()

    @property
    def status(self) -> str:
        """The record's status (GET run, logs); the logs index follows every change."""
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        old, self._status = self.__dict__.get("_status"), value
        if old is not None and old != value and self.index is not None:
            self.index.status_changed(self, old, value)

    # ---------------------------------------------------------------- who started it
    @property
    def session_id(self) -> str | None:
        """The end user's `user` string; None for a console account's run (no session to re-attach with)."""
        return self.end_user.session_id if self.end_user is not None else None

    @property
    def listed_in_logs(self) -> bool:
        return self.created_from != DEBUGGING

    @property
    def triggered_from(self) -> str:
        return "debugging" if self.created_from == DEBUGGING else "app-run"

    def created_by(self) -> dict:
        """`created_by` of workflow_finished: the end user's id and `user`, or the account."""
        if self.account is not None:
            return self.account.as_json()
        return {"id": self.end_user.id, "user": self.end_user.session_id}

    # ---------------------------------------------------------------- system variables
    def system_variables(self) -> dict[str, Any]:
        user_id = self.session_id if self.end_user is not None else self.account.id
        return {"files": [], "user_id": user_id, "app_id": self.app.id,
                "workflow_id": self.workflow.id, "workflow_run_id": self.id, "timestamp": self.created_at}

    def stream_inputs(self) -> dict:
        """`inputs` of workflow_started: user inputs plus sys.* (without sys.timestamp)."""
        sys_vars = self.system_variables()
        return {**self.user_inputs, **{f"sys.{k}": sys_vars[k]
                                       for k in ("files", "user_id", "app_id", "workflow_id", "workflow_run_id")}}

    def record_inputs_json(self) -> str:
        """`inputs` of GET run: a JSON *string* incl. sys.timestamp, Python's default separators."""
        sys_vars = self.system_variables()
        keys = ("files", "user_id", "app_id", "timestamp", "workflow_id", "workflow_run_id")
        return json.dumps({**self.user_inputs, **{f"sys.{k}": sys_vars[k] for k in keys}}, ensure_ascii=False)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 6)

    # ---------------------------------------------------------------- event fan-out
    def envelope(self, event: str, data: dict) -> dict:
        return {"event": event, "workflow_run_id": self.id, "task_id": self.task_id, "data": data}

    def publish(self, event: str, data: dict) -> None:
        if self.detached:
            return
        message = self.envelope(event, data)
        self.events.append(message)
        for queue, close_on in list(self.subscribers.items()):
            queue.put_nowait(message)
            if event in close_on:
                queue.put_nowait(CLOSE)
                del self.subscribers[queue]

    def subscribe(self, replay: list[dict] = (), close_on: tuple[str, ...] = TERMINAL_EVENTS) -> asyncio.Queue:
        """A queue of `replay` then the live events, closed after the first event named in `close_on`.

        A run's own stream closes at workflow_finished and workflow_paused; a re-attach may go on
        through a pause (continue_on_pause) or even past the finish (fixture 13)."""
        queue: asyncio.Queue = asyncio.Queue()
        for message in replay:
            queue.put_nowait(message)
            if message["event"] in close_on:
                queue.put_nowait(CLOSE)
                return queue
        if self.stream_ended:
            queue.put_nowait(CLOSE)
        else:
            self.subscribers[queue] = frozenset(close_on)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.pop(queue, None)

    # ---------------------------------------------------------------- endings
    def finished_payload(self, status: str, outputs: dict, error: str | None) -> dict:
        return {"id": self.id, "workflow_id": self.workflow.id, "status": status, "outputs": outputs, "error": error,
                "elapsed_time": self.elapsed(), "total_tokens": 0, "total_steps": self.steps,
                "created_by": self.created_by(),
                "created_at": self.segment_created_at, "finished_at": int(time.time()),
                "exceptions_count": self.exceptions_count, "files": []}

    def finish(self, status: str, outputs: dict, error: str | None) -> None:
        """The engine reached the end: record and stream agree (unless the run was stopped before)."""
        if self.detached:
            return  # a stopped run's record is never written (fixture 11)
        payload = self.finished_payload(status, outputs, error)
        self.status, self.outputs, self.error = status, outputs, error
        self.total_steps = self.steps
        self.finished_at, self.elapsed_time = payload["finished_at"], payload["elapsed_time"]
        self.final_payload = {**payload, "created_at": self.created_at}  # the record's own created_at
        self._end_stream(payload)

    def stop(self, delay_s: float = 0.0) -> None:
        """A stop call: `delay_s` later the stream ends `stopped`; the record stays `running`.

        Real Dify's worker notices the stop flag on its next check, about a second after the call
        (seen side by side); a run that finishes meanwhile finishes normally."""
        if self.stream_ended or self.stop_timer is not None:
            return
        if self.status == "paused":
            self.request_stop_while_paused()  # nothing until the form is submitted (fixture 11)
            return
        self.stop_timer = asyncio.get_running_loop().call_later(max(0.0, delay_s), self.stop_now)

    def stop_now(self) -> None:
        """Stop or maximum execution time: the stream ends `stopped`, the record stays `running`."""
        self.stop_timer = None
        if self.stream_ended:
            return
        if self.status == "paused":
            self.request_stop_while_paused()  # paused while the stop was on its way
            return
        self._end_stream(self.finished_payload("stopped", {}, "Stopped by user."))
        self.detached = True

    def arm_max_execution_time(self, seconds: float) -> None:
        """Stop the run `seconds` from now (WORKFLOW_MAX_EXECUTION_TIME, per worker: re-armed on resumption)."""
        self.max_execution_time_s = seconds
        self.disarm_max_execution_time()
        self.max_execution_timer = asyncio.get_running_loop().call_later(seconds, self.expire)

    def disarm_max_execution_time(self) -> None:
        if self.max_execution_timer is not None:
            self.max_execution_timer.cancel()
            self.max_execution_timer = None

    def expire(self) -> None:
        """The maximum execution time passed. A paused run holds no worker in Dify, so it is spared."""
        if self.status != "paused":
            self.stop_now()

    def _end_stream(self, payload: dict) -> None:
        self.stream_ended = True
        self.publish("workflow_finished", payload)
        if not self.outcome.done():
            self.outcome.set_result(payload)
