"""What the poller knows about runs, from every source, written to the store; plain sync functions
that return the messages to publish after their transaction committed (like the decider's logic).

Sources: a tracking request, a Dify event (streamed by the gateway or the poller, or reported by the
workflow itself), a poll of GET /v1/workflows/run/{id}, a row of GET /v1/workflows/logs.
"""
from __future__ import annotations

import random
import time
from typing import Any

from shared.broker import Outbound
from shared.models import CheckpointRequested, FormReport, RunEnded, RunEvent, RunStatusEvent, RunTrack
from shared.settings import Settings
from shared.store import Database
from shared.store import runs as store
from shared.store.rows import RunRow
from shared.topology import CHECKPOINT_REQUESTED, FORM_REPORT, RUN_ENDED
from shared.views import public_run

TERMINAL = store.RUN_TERMINAL
CANCELS_CHECKPOINTS = {"failed", "stopped"}
# Event names whose data describes one node execution.
NODE_EVENTS = {"node_started": "running", "node_finished": None, "node_retry": "retry"}


class Recorder:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.names = settings.names

    # ------------------------------------------------------------------ outbound helpers
    def _status_changed(self, conn, app: str, run_id: str, status: str, out: list[Outbound],
                        previous: str | None = None) -> None:
        run = store.get(conn, app, run_id)
        assert run is not None
        if previous == "paused":  # Dify resumed it (a form was submitted) — or it ended while paused
            out.append(self._form_report(app, run_id, "run_resumed", run_status=status))
        store.append_history(conn, app, run_id, "status", status=status)
        out.append(Outbound(self.names.events, f"run.status.{status}",
                            RunStatusEvent(type=f"run.status.{status}", run=public_run(run)).to_bytes()))
        if status in CANCELS_CHECKPOINTS:
            out.append(Outbound(self.names.commands, RUN_ENDED,
                                RunEnded(app=app, workflow_run_id=run_id, status=status).to_bytes()))

    def _form_report(self, app: str, run_id: str, outcome: str, **fields: Any) -> Outbound:
        return Outbound(self.names.commands, FORM_REPORT,
                        FormReport(app=app, workflow_run_id=run_id, outcome=outcome, **fields).to_bytes())

    def _capture_form(self, msg: RunEvent, data: dict[str, Any], out: list[Outbound]) -> None:
        """A Human Input pause: open a `dify-form` checkpoint in the same inbox as HTTP checkpoints.
        Only from what Dify itself said (a stream or a blocking answer): a workflow's own report
        cannot open a form, whatever token it carries."""
        if not data.get("form_token") or msg.source == "workflow":
            return  # nothing to submit with; the run shows as paused without a form token
        form = {k: data.get(k) for k in ("form_id", "form_content", "inputs", "actions", "node_title",
                                         "resolved_default_values", "expiration_time", "display_in_ui")}
        req = CheckpointRequested(
            app=msg.app, workflow_run_id=msg.workflow_run_id, node_id=data.get("node_id") or "human_input",
            node_output=data.get("resolved_default_values"), message=data.get("node_title"), user=msg.user,
            timeout_s=self.settings.default_timeout_s, max_rounds=self.settings.default_max_rounds,
            kind="dify-form", form=form, form_token=data["form_token"])
        out.append(Outbound(self.names.commands, CHECKPOINT_REQUESTED, req.to_bytes()))

    # ------------------------------------------------------------------ tracking
    def track(self, msg: RunTrack) -> list[Outbound]:
        with self.db.write() as conn:
            created = store.ensure(conn, msg.app, msg.workflow_run_id, msg.source, task_id=msg.task_id, user=msg.user,
                                   parent_run_id=msg.parent_run_id, overrides=msg.overrides,
                                   continuation_of=msg.continuation_of)
            if created:
                store.append_history(conn, msg.app, msg.workflow_run_id, "tracked", detail={"source": msg.source})
        return []

    # ------------------------------------------------------------------ events
    def on_event(self, msg: RunEvent) -> list[Outbound]:
        ev, out = msg.event, []
        name, data, run_id, app_name = ev.get("event"), ev.get("data") or {}, msg.workflow_run_id, msg.app
        if name in ("ping", "text_chunk", None):
            return out
        app = self.settings.app(msg.app)
        pollable = bool(app and app.watched)
        with self.db.write() as conn:
            if store.ensure(conn, app_name, run_id, msg.source, task_id=ev.get("task_id"), user=msg.user,
                            next_poll_at=time.time() if pollable else None):
                store.append_history(conn, app_name, run_id, "tracked", detail={"source": msg.source})
            if msg.source != "workflow":
                store.update_run(conn, app_name, run_id, streamed=True, last_event_at=time.time())
            current = store.get(conn, app_name, run_id)
            assert current is not None
            previous = current["status"]
            if name in NODE_EVENTS:
                self._node_event(conn, app_name, run_id, name, data, out)
            elif name == "workflow_started":
                store.update_run(conn, app_name, run_id, inputs=data.get("inputs"), workflow_id=data.get("workflow_id"),
                                 created_at=data.get("created_at"))
                replayed = previous == "paused" and data.get("reason") == "initial"  # a re-attach snapshot
                if not replayed and store.set_status(conn, app_name, run_id, "running"):  # resumed
                    self._status_changed(conn, app_name, run_id, "running", out, previous)
                store.append_history(conn, app_name, run_id, "stream", status="running",
                                     detail={"event": name, "reason": data.get("reason")})
            elif name == "workflow_paused":
                for reason in data.get("reasons") or []:  # a blocking answer carries the form here
                    if reason.get("TYPE") == "human_input_required":
                        self._capture_form(msg, reason, out)
                if store.set_status(conn, app_name, run_id, "paused"):
                    self._status_changed(conn, app_name, run_id, "paused", out)
            elif name == "workflow_finished":
                self._finished(conn, app_name, run_id, data, out, previous)
            elif name == "human_input_required":
                self._capture_form(msg, data, out)
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"),
                                     detail={"event": name})
            elif name in ("human_input_form_timeout", "human_input_form_filled"):
                outcome = "form_timeout" if name == "human_input_form_timeout" else "run_resumed"
                out.append(self._form_report(app_name, run_id, outcome, node_id=data.get("node_id"),
                                             detail=data.get("action_id") or data.get("action")))
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"),
                                     detail={"event": name})
            else:  # loop_*, error, human_input_*, milestones reported by the workflow: kept in the history
                detail = {k: v for k, v in (data or ev).items() if k in ("code", "message", "status", "node_id",
                                                                          "index", "reason", "error")}
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"),
                                     detail={"event": name, **detail})
        return out

    def _node_event(self, conn, app: str, run_id: str, name: str, data: dict[str, Any], out: list[Outbound]) -> None:
        status = NODE_EVENTS[name] or data.get("status") or "unknown"
        node_id = data.get("node_id") or "?"
        execution_id = data.get("id") or f"{run_id}:{node_id}"
        meta = data.get("execution_metadata") or {}
        values = dict(node_id=node_id, node_type=data.get("node_type"), title=data.get("title"),
                      loop_id=data.get("loop_id"), loop_index=meta.get("loop_index"), error=data.get("error"),
                      inputs=data.get("inputs"), outputs=data.get("outputs") if name != "node_started" else None,
                      elapsed_time=data.get("elapsed_time"), started_at=data.get("created_at"),
                      finished_at=data.get("finished_at"))
        if name == "node_retry":
            values["retries"] = data.get("retry_index")
        if store.upsert_node(conn, app, run_id, execution_id, status, **values):
            store.append_history(conn, app, run_id, "node", status=status, node_id=node_id,
                                 detail={"error": data.get("error")} if data.get("error") else None)
            node = {k: v for k, v in values.items() if k not in ("inputs", "outputs")}
            run = store.get(conn, app, run_id)
            assert run is not None
            out.append(Outbound(self.names.events, f"node.{status}",
                                RunStatusEvent(type=f"node.{status}", run=public_run(run),
                                               node={"id": execution_id, "status": status, **node}).to_bytes()))

    def _finished(self, conn, app: str, run_id: str, data: dict[str, Any], out: list[Outbound],
                  previous: str | None) -> None:
        status = data.get("status") or "unknown"
        fields = dict(outputs=data.get("outputs"), error=data.get("error"), elapsed_time=data.get("elapsed_time"),
                      total_steps=data.get("total_steps"), exceptions_count=data.get("exceptions_count"),
                      finished_at=data.get("finished_at"))
        # One more poll confirms Dify's record; after a stop it will say `running` forever (DIFY.md),
        # which that poll flags as a stale record before polling ends.
        if store.set_status(conn, app, run_id, status, **fields):
            store.update_run(conn, app, run_id, next_poll_at=time.time() + self.settings.poll_min_interval_s,
                             poll_interval=self.settings.poll_min_interval_s)
            self._status_changed(conn, app, run_id, status, out, previous)

    # ------------------------------------------------------------------ polls
    def on_poll(self, run: RunRow, record, owner: str) -> list[Outbound]:
        """Apply GET /v1/workflows/run/{id} to a leased run and schedule its next poll."""
        out: list[Outbound] = []
        status = record.status
        now = time.time()
        app, run_id = run["app"], run["id"]
        with self.db.write() as conn:
            values: dict[str, Any] = dict(dify_status=status, poll_failures=0)
            if run["status"] == "stopped" and status not in TERMINAL:
                # We saw the stop on the stream; Dify's record says otherwise and will keep doing so.
                values.update(stale_record=True, next_poll_at=None)
                if not run["stale_record"]:
                    store.append_history(conn, app, run_id, "stale_record", status=status,
                                         detail={"ours": run["status"], "dify": status})
            elif run["status"] in TERMINAL:
                # Ended on the stream: wait (backing off) until Dify's record has caught up.
                interval = min((run["poll_interval"] or 1) * 2, self.settings.poll_max_interval_s)
                values.update(poll_interval=interval, next_poll_at=None if status in TERMINAL else now + interval)
            elif status != run["status"]:
                fields = dict(outputs=record.outputs or None, error=record.error, elapsed_time=record.elapsed_time,
                              total_steps=record.total_steps, finished_at=record.finished_at,
                              inputs=run["inputs"] or record.inputs, created_at=run["created_at"] or record.created_at)
                if store.set_status(conn, app, run_id, status, **fields):
                    self._status_changed(conn, app, run_id, status, out, run["status"])
                values.update(poll_interval=self.settings.poll_min_interval_s,
                              next_poll_at=None if status in TERMINAL else now + self.settings.poll_min_interval_s)
            else:
                interval = min((run["poll_interval"] or 1) * 2, self.settings.poll_max_interval_s)
                values.update(poll_interval=interval, next_poll_at=None if status in TERMINAL else now + interval)
            store.release(conn, app, run_id, owner, **values)
        return out

    def on_poll_error(self, run: RunRow, error: Exception, owner: str, gone: bool = False) -> None:
        """Dify did not answer usefully: back off (capped, jittered) and keep the run; nothing is lost."""
        failures = (run["poll_failures"] or 0) + 1
        delay = min(self.settings.poll_max_interval_s * 2, 2 ** min(failures, 6)) * (0.5 + random.random() / 2)
        app, run_id = run["app"], run["id"]
        with self.db.write() as conn:
            if gone and failures >= 5:
                store.set_status(conn, app, run_id, "not_found")
                store.append_history(conn, app, run_id, "status", status="not_found",
                                     detail={"error": str(error)[:300]})
                store.release(conn, app, run_id, owner, poll_failures=failures, next_poll_at=None)
                return
            store.release(conn, app, run_id, owner, poll_failures=failures, next_poll_at=time.time() + delay)

    # ------------------------------------------------------------------ discovery
    def on_discovered(self, app: str, entry) -> list[Outbound]:
        """A row of Dify's logs: track the run if it is new; its status is current as of the listing."""
        wr = entry.workflow_run
        out: list[Outbound] = []
        with self.db.write() as conn:
            terminal = wr.status in TERMINAL
            session = entry.created_by_end_user.session_id if entry.created_by_end_user else None
            created = store.ensure(conn, app, wr.id, "logs", status=wr.status, created_at=wr.created_at, user=session,
                                   next_poll_at=None if terminal else time.time())
            if not created:
                return out
            store.append_history(conn, app, wr.id, "tracked", detail={"source": "logs"})
            if terminal:
                store.update_run(conn, app, wr.id, dify_status=wr.status, error=wr.error, elapsed_time=wr.elapsed_time,
                                 total_steps=wr.total_steps, exceptions_count=wr.exceptions_count,
                                 finished_at=wr.finished_at)
            self._status_changed(conn, app, wr.id, wr.status, out)
        return out

    def poll_soon(self, app: str, run_id: str) -> None:
        """After a form submit: look at the run again right away (is it leaving `paused`?)."""
        with self.db.write() as conn:
            store.update_run(conn, app, run_id, next_poll_at=time.time() + 0.5,
                             poll_interval=self.settings.poll_min_interval_s)

    def run_user(self, app: str, run_id: str) -> str | None:
        with self.db.read() as conn:
            run = store.get(conn, app, run_id)
        return run["user"] if run else None

    def continuation_exists(self, checkpoint_id: str) -> bool:
        with self.db.read() as conn:
            return store.continuation_for(conn, checkpoint_id) is not None

    def due(self, owner: str, limit: int) -> list[RunRow]:
        with self.db.write() as conn:
            return store.claim_due(conn, owner, time.time(), self.settings.poll_lease_s, limit)

    def watermark(self, app: str) -> float | None:
        with self.db.read() as conn:
            return store.watermark(conn, app)

    def set_watermark(self, app: str, created_at: float) -> None:
        with self.db.write() as conn:
            store.set_watermark(conn, app, created_at)
