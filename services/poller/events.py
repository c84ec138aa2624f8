"""Run news from events: a tracking request, a Dify event (streamed by the gateway or a process of ours,
replayed by a re-attach, or reported by the workflow itself), and the heartbeats of stream readers."""
from __future__ import annotations

import time
from typing import Any

from services.poller.runbook import RunBook
from shared.broker import Outbound
from shared.dify.models import CHUNK_EVENTS
from shared.models import CheckpointRequested, RunEvent, RunStatusEvent, RunTrack, StreamsAlive
from shared.store import run_tracking
from shared.store import runs as store
from shared.topology import CHECKPOINT_REQUESTED
from shared.views import public_run

# Event names whose data describes one node execution.
NODE_EVENTS = {"node_started": "running", "node_finished": None, "node_retry": "retry"}


class EventBook(RunBook):
    # ------------------------------------------------------------------ tracking
    def track(self, msg: RunTrack) -> list[Outbound]:
        with self.db.write() as conn:
            created = store.ensure(conn, msg.app, msg.workflow_run_id, msg.source, task_id=msg.task_id, user=msg.user,
                                   parent_run_id=msg.parent_run_id, overrides=msg.overrides,
                                   continuation_of=msg.continuation_of)
            if created:
                store.append_history(conn, msg.app, msg.workflow_run_id, "tracked", detail={"source": msg.source})
        return []

    def streams_alive(self, msg: StreamsAlive) -> list[Outbound]:
        """A reader says which streams it still reads: their runs are not re-attached."""
        by_app: dict[str, list[str]] = {}
        for app, run_id in msg.streams:
            by_app.setdefault(app, []).append(run_id)
        with self.db.write() as conn:
            for app, ids in by_app.items():
                run_tracking.streams_alive(conn, app, ids, time.time())
        return []

    # ------------------------------------------------------------------ events
    def on_event(self, msg: RunEvent) -> list[Outbound]:
        ev, out = msg.event, list[Outbound]()
        name, data, run_id, app_name = ev.get("event"), ev.get("data") or {}, msg.workflow_run_id, msg.app
        if name in ("ping", None) or name in CHUNK_EVENTS:
            return out
        app = self.settings.app(msg.app)
        pollable = bool(app and app.watched)
        now = time.time()
        with self.db.write() as conn:
            if store.ensure(conn, app_name, run_id, msg.source, task_id=ev.get("task_id"), user=msg.user,
                            started_by="end_user" if msg.user and msg.source != "workflow" else None,
                            next_poll_at=now if pollable else None):
                store.append_history(conn, app_name, run_id, "tracked", detail={"source": msg.source})
            if msg.source != "workflow":
                store.update_run(conn, app_name, run_id, streamed=True, last_event_at=now, stream_alive_at=now)
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
                    self.status_changed(conn, app_name, run_id, "running", out, previous)
                store.append_history(conn, app_name, run_id, "stream", status="running",
                                     detail={"event": name, "reason": data.get("reason")})
            elif name == "workflow_paused":
                for reason in data.get("reasons") or []:  # a blocking answer carries the form here
                    if reason.get("TYPE") == "human_input_required":
                        self._capture_form(conn, msg, reason, out)
                if store.set_status(conn, app_name, run_id, "paused"):
                    self.status_changed(conn, app_name, run_id, "paused", out)
            elif name == "workflow_finished":
                self._finished(conn, app_name, run_id, data, out, previous)
            elif name == "human_input_required":
                self._capture_form(conn, msg, data, out)
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"),
                                     detail={"event": name})
            elif name in ("human_input_form_timeout", "human_input_form_filled"):
                outcome = "form_timeout" if name == "human_input_form_timeout" else "run_resumed"
                out.append(self.form_report(app_name, run_id, outcome, node_id=data.get("node_id"),
                                            detail=data.get("action_id") or data.get("action")))
                detail = {"event": name, "action_id": data.get("action_id")}
                if isinstance(data.get("submitted_data"), dict):  # Dify 1.15+: the values as submitted
                    detail["submitted_data"] = data["submitted_data"]
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"), detail=detail)
            else:  # loop_*, error, human_input_*, milestones reported by the workflow: kept in the history
                detail = {k: v for k, v in (data or ev).items() if k in ("code", "message", "status", "node_id",
                                                                          "index", "reason", "error")}
                store.append_history(conn, app_name, run_id, "event", node_id=data.get("node_id"),
                                     detail={"event": name, **detail})
        return out

    def _capture_form(self, conn, msg: RunEvent, data: dict[str, Any], out: list[Outbound]) -> None:
        """A Human Input pause: open a `dify-form` checkpoint in the same inbox as HTTP checkpoints.
        Only from what Dify itself said (a stream, a re-attach's replay or a blocking answer): a
        workflow's own report cannot open a form, whatever token it carries."""
        if not data.get("form_token") or msg.source == "workflow":
            return  # nothing to submit with
        form = {k: data.get(k) for k in ("form_id", "form_content", "inputs", "actions", "node_title",
                                         "resolved_default_values", "expiration_time", "display_in_ui")}
        run = store.get(conn, msg.app, msg.workflow_run_id)
        user = (self.user_of(run) if run else None) or msg.user
        req = CheckpointRequested(
            app=msg.app, workflow_run_id=msg.workflow_run_id, node_id=data.get("node_id") or "human_input",
            node_output=data.get("resolved_default_values"), message=data.get("node_title"), user=user,
            timeout_s=self.settings.default_timeout_s, max_rounds=self.settings.default_max_rounds,
            kind="dify-form", form=form, form_token=data["form_token"])
        out.append(Outbound(self.names.commands, CHECKPOINT_REQUESTED, req.to_bytes()))
        if run is not None and run["capture"] != "captured":
            self.capture_state(conn, run, "captured", None)

    def _node_event(self, conn, app: str, run_id: str, name: str, data: dict[str, Any], out: list[Outbound]) -> None:
        status = NODE_EVENTS[name] or data.get("status") or "unknown"
        node_id = data.get("node_id") or "?"
        execution_id = data.get("id") or f"{run_id}:{node_id}"
        meta = data.get("execution_metadata") or {}
        values = dict(node_id=node_id, node_type=data.get("node_type"), title=data.get("title"),
                      loop_id=data.get("loop_id"), loop_index=meta.get("loop_index"),
                      iteration_id=data.get("iteration_id"), iteration_index=meta.get("iteration_index"),
                      error=data.get("error"),
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
            self.status_changed(conn, app, run_id, status, out, previous)
        elif previous == status:  # the listing saw the end first: the stream brings what it lacked
            run = store.get(conn, app, run_id)
            missing = {k: v for k, v in fields.items() if v is not None and run is not None and run.get(k) is None}
            if missing:
                store.update_run(conn, app, run_id, **missing)
