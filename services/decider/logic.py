"""The checkpoint state machine. Plain synchronous functions over the store that return what must be
published once their transaction has committed; the wiring in service.py does the publishing.

Idempotent by construction: a redelivered request re-attaches or replays; a redelivered decision
(same message id or idempotency key) finds its recorded outcome and re-emits the same messages.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.models import (Action, CheckpointEvent, CheckpointRequested, CheckpointStatus, DecisionSubmitted,
                           FormReport, OnTimeout, Reply, Resolution)
from shared.outbox import Outbound
from shared.views import public_view
from shared.settings import Settings
from shared.store import Database
from shared.store import checkpoints as store
from services.decider import forms


@dataclass
class Outcome:
    """What happened to one request or decision, for the caller, logs and metrics."""

    kind: str  # opened | reattached | replayed | pending | applied | rejected | duplicate
    checkpoint: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    outbound: list[Outbound] = field(default_factory=list)


def resolution_of(cp: dict[str, Any]) -> Resolution:
    return Resolution(action=cp["action"], checkpoint_id=cp["id"], round=cp["round"], output=cp["output"],
                      feedback=cp["feedback"], decided_by=cp["decided_by"], reason=cp["reason"])


def reply_to_call(cp: dict[str, Any], reply_to: str | None = None, correlation_id: str | None = None) -> list[Outbound]:
    """The resolution for the held Dify call (the one recorded on the checkpoint unless given)."""
    reply_to = reply_to or cp.get("reply_to")
    correlation_id = correlation_id or cp.get("correlation_id")
    if not reply_to:
        return []
    body = Reply(outcome="resolved", checkpoint_id=cp["id"], resolution=resolution_of(cp)).to_bytes()
    return [Outbound("", reply_to, body, correlation_id, persistent=False)]


def event(exchange: str, kind: str, cp: dict[str, Any], decision: dict[str, Any] | None = None) -> Outbound:
    msg = CheckpointEvent(type=kind, checkpoint=public_view(cp), decision=decision)
    return Outbound(exchange, kind, msg.to_bytes())


class Decider:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.events_exchange = settings.names.events

    def _event(self, kind: str, cp: dict[str, Any], decision: dict[str, Any] | None = None) -> Outbound:
        return event(self.events_exchange, kind, cp, decision)

    event_of = _event

    # ------------------------------------------------------------------ checkpoint requests
    def on_request(self, req: CheckpointRequested, reply_to: str | None, correlation_id: str | None,
                   redelivered: bool = False) -> Outcome:
        if req.kind == "dify-form":
            return self.on_form_captured(req, redelivered)
        with self.db.write() as conn:
            # With the round in the call (the recipe sends it) the insert comes first: a new
            # checkpoint, the common case, then costs two statements.
            round_, existing = (req.round, None) if req.round is not None else self._locate_round(conn, req)
            cp = None
            if existing is None:
                cp = store.insert_if_absent(conn, self._new_row(req, round_, reply_to, correlation_id))
            created = cp is not None
            if created:
                store.append_history(conn, cp["id"], "opened", actor=req.user, channel="dify", message_id=req.id,
                                     detail={"round": round_, "mode": req.mode})
            else:
                cp = existing or store.by_key(conn, req.workflow_run_id, req.node_id, round_)
            if not created and cp["status"] == CheckpointStatus.open:
                store.attach(conn, cp["id"], reply_to, correlation_id)
                store.append_history(conn, cp["id"], "reattached", channel="dify", message_id=req.id,
                                     detail={"attempt": cp["attach_count"] + 1})
        return self._request_outcome(cp, created, reply_to, correlation_id, redelivered)

    @staticmethod
    def _new_row(req: CheckpointRequested, round_: int, reply_to: str | None, correlation_id: str | None) -> dict:
        now = time.time()
        return dict(
            id=str(uuid.uuid4()), app=req.app, kind=req.kind, workflow_run_id=req.workflow_run_id,
            node_id=req.node_id, round=round_, status=CheckpointStatus.open, mode=req.mode,
            message=req.message, node_output=req.node_output, app_id=req.app_id, workflow_id=req.workflow_id,
            user=req.user, timeout_s=req.timeout_s, deadline=now + req.timeout_s, on_timeout=req.on_timeout,
            default_output=req.default_output, assignees=req.assignees, max_rounds=req.max_rounds,
            created_at=now, updated_at=now, reply_to=reply_to, correlation_id=correlation_id,
            attach_count=1, published=True)

    def _locate_round(self, conn, req: CheckpointRequested) -> tuple[int, dict[str, Any] | None]:
        if req.round is not None:
            return req.round, store.by_key(conn, req.workflow_run_id, req.node_id, req.round)
        last = store.latest(conn, req.workflow_run_id, req.node_id)
        if last is None:
            return 1, None
        # Without an explicit round: after a revise, a call carrying a new output is the next round;
        # the same output again is Dify re-sending the call that was already answered.
        if (last["status"] == CheckpointStatus.resolved and last["action"] == Action.revise
                and last["node_output"] != req.node_output):
            return last["round"] + 1, store.by_key(conn, req.workflow_run_id, req.node_id, last["round"] + 1)
        return last["round"], last

    def _request_outcome(self, cp, created, reply_to, correlation_id, redelivered) -> Outcome:
        if cp["status"] != CheckpointStatus.open:
            return Outcome("replayed", cp, outbound=reply_to_call(cp, reply_to, correlation_id))
        out: list[Outbound] = []
        if created or redelivered:  # redelivered: the first attempt may have died before announcing it
            out.append(self._event("checkpoint.opened", cp))
        if cp["mode"] == "detached" and reply_to:
            body = Reply(outcome="pending", checkpoint_id=cp["id"]).to_bytes()
            out.append(Outbound("", reply_to, body, correlation_id, persistent=False))
        return Outcome("opened" if created else "reattached", cp, outbound=out)

    # ------------------------------------------------------------------ decisions
    def on_decision(self, dec: DecisionSubmitted, reply_to: str | None = None,
                    correlation_id: str | None = None) -> Outcome:
        with self.db.write() as conn:
            cp = self._target(conn, dec)
            if cp is None:
                return self._answer(Outcome("rejected", None, "not_found", "no such checkpoint"), reply_to, correlation_id)
            earlier = store.earlier_attempt(conn, cp["id"], dec.id, dec.idempotency_key)
            if earlier is not None:
                return self._replay_decision(conn, cp, earlier, reply_to, correlation_id)
            refusal = self._refusal(cp, dec)
            output = cp["node_output"] if dec.action == Action.approve else dec.output if dec.action == Action.edit else None
            if refusal is None and cp["kind"] == "dify-form":
                action_id, inputs = forms.submission(cp, dec)
                refusal = inputs if action_id is None else None
                output = {"action": action_id, "inputs": inputs}
            resolved = None
            if refusal is None:
                feedback = dec.feedback if dec.feedback is not None else dec.reason
                resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.resolved, action=dec.action,
                                         output=output, feedback=feedback, decided_by=dec.actor, reason="decision",
                                         channel=dec.channel)
                if resolved is None:
                    cp = store.get(conn, cp["id"])
                    refusal = self._refusal(cp, dec)
                elif cp["kind"] == "dify-form":
                    store.set_delivery(conn, cp["id"], "pending", None, time.time())
                    resolved["delivery"] = "pending"
            detail = {"feedback": dec.feedback, "reason": dec.reason}
            if dec.has_output:
                detail["output"] = dec.output
            store.append_history(conn, cp["id"], "decision", actor=dec.actor, channel=dec.channel, action=dec.action,
                                 outcome="rejected" if refusal else "applied", code=refusal[0] if refusal else None,
                                 message_id=dec.id, idempotency_key=dec.idempotency_key, detail=detail)
            if refusal:
                winning = store.winning_decision(conn, cp["id"])
        if refusal:
            outcome = Outcome("rejected", cp, refusal[0], refusal[1])
            outcome.outbound.append(self._event("decision.rejected", cp, {**dec.model_dump(mode="json"), "code": refusal[0]}))
            return self._answer(outcome, reply_to, correlation_id, winning=_winning_view(winning, cp))
        outcome = Outcome("applied", resolved)
        outcome.outbound += reply_to_call(resolved) + [self._event("checkpoint.resolved", resolved, dec.model_dump(mode="json"))]
        if resolved["kind"] == "dify-form":
            outcome.outbound.append(forms.delivery_command(self.settings.names.commands, resolved, dec.actor))
        return self._answer(outcome, reply_to, correlation_id)

    def _target(self, conn, dec: DecisionSubmitted) -> dict[str, Any] | None:
        if dec.checkpoint_id:
            return store.get(conn, dec.checkpoint_id)
        if dec.workflow_run_id and dec.node_id:
            return store.latest(conn, dec.workflow_run_id, dec.node_id)
        return None

    def _refusal(self, cp: dict[str, Any], dec: DecisionSubmitted) -> tuple[str, str] | None:
        if cp["status"] != CheckpointStatus.open:
            return "already_resolved", f"checkpoint is {cp['status']} ({cp['action']} by {cp['decided_by']})"
        http = cp["kind"] == "http"  # a Dify form has its own actions: no rounds of ours to count
        if http and dec.action == Action.revise and not (dec.feedback or "").strip():
            return "feedback_required", "revise needs feedback for the next round"
        if http and dec.action == Action.revise and cp["round"] >= cp["max_rounds"]:
            return "max_rounds_reached", f"round {cp['round']} is the last of max_rounds={cp['max_rounds']}"
        if dec.action == Action.edit and not dec.has_output:
            return "output_required", "edit needs the new output"
        if cp["assignees"] and not self._is_assignee(dec.actor, cp["assignees"]):
            return "not_assignee", f"{dec.actor} is not among the assignees {cp['assignees']}"
        return None

    def _is_assignee(self, actor: str, assignees: list[str]) -> bool:
        reviewer = self.settings.reviewer(actor)
        groups = {f"group:{g}" for g in (reviewer.groups if reviewer else [])}
        return actor in assignees or bool(groups & set(assignees))

    def _replay_decision(self, conn, cp, earlier, reply_to, correlation_id) -> Outcome:
        if earlier["outcome"] == "applied":
            outcome = Outcome("duplicate", cp)
            outcome.outbound += reply_to_call(cp) + [self._event("checkpoint.resolved", cp)]
            if cp["kind"] == "dify-form" and cp["delivery"] == "pending":  # the first delivery may be lost
                outcome.outbound.append(forms.delivery_command(self.settings.names.commands, cp, earlier["actor"]))
            return self._answer(outcome, reply_to, correlation_id, applied=True)
        winning = store.winning_decision(conn, cp["id"])
        outcome = Outcome("rejected", cp, earlier["code"], "the same decision was already refused")
        return self._answer(outcome, reply_to, correlation_id, winning=_winning_view(winning, cp))

    @staticmethod
    def _answer(outcome: Outcome, reply_to, correlation_id, winning=None, applied: bool = False) -> Outcome:
        if reply_to:
            ok = outcome.kind == "applied" or applied
            cp = outcome.checkpoint
            reply = Reply(outcome="applied" if ok else "rejected", checkpoint_id=cp["id"] if cp else None,
                          resolution=resolution_of(cp) if ok else None, error_code=None if ok else outcome.code,
                          error_message=None if ok else outcome.message, winning=winning)
            outcome.outbound.append(Outbound("", reply_to, reply.to_bytes(), correlation_id, persistent=False))
        return outcome

    # ------------------------------------------------------------------ Dify form checkpoints
    def on_form_captured(self, req: CheckpointRequested, redelivered: bool) -> Outcome:
        with self.db.write() as conn:
            round_, cp = forms.locate(conn, req)
            created = False
            if cp is None:
                values = forms.capture_values(req, round_, time.time())
                cp = store.insert_if_absent(conn, values)
                created = cp is not None
                cp = cp or store.by_key(conn, req.workflow_run_id, req.node_id, round_)
                if created:
                    store.append_history(conn, cp["id"], "captured", actor=req.user, channel="dify",
                                         message_id=req.id, detail={"round": round_, "node_title": (req.form or {}).get("node_title")})
        out = [self._event("checkpoint.opened", cp)] if created or redelivered else []
        return Outcome("opened" if created else "replayed", cp, outbound=out)

    def on_form_report(self, report: FormReport) -> list[Outbound]:
        with self.db.write() as conn:
            changes = forms.apply_report(conn, report)
        return [self._event(kind, cp) for kind, cp in changes]

    def flag_stuck_resumes(self) -> list[dict[str, Any]]:
        """Delivered forms whose run has not left `paused` in time: Dify's known lost resume."""
        stuck = []
        with self.db.write() as conn:
            for cp in store.resume_overdue(conn, time.time() - self.settings.resume_timeout_s):
                store.set_delivery(conn, cp["id"], "resume_stuck", "the run is still paused after the submit",
                                   time.time())
                store.append_history(conn, cp["id"], "resume_stuck", actor="system", channel="poller",
                                     outcome="resume_stuck", detail={"waited_s": self.settings.resume_timeout_s})
                stuck.append(store.get(conn, cp["id"]))
        return stuck

    # ------------------------------------------------------------------ deadlines
    def expire(self, checkpoint_id: str) -> Outcome | None:
        """Apply on_timeout to one overdue checkpoint, as a decision by `system`."""
        with self.db.write() as conn:
            cp = store.get(conn, checkpoint_id)
            if cp is None or cp["status"] != CheckpointStatus.open or cp["deadline"] > time.time():
                return None
            action, output = {
                OnTimeout.approve: (Action.approve, cp["node_output"]),
                OnTimeout.default: (Action.edit, cp["default_output"]),
            }.get(cp["on_timeout"], (Action.abort, None))
            resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.expired, action=action, output=output,
                                     feedback=None, decided_by="system", reason="timeout", channel="deadline",
                                     published=False)
            if resolved is None:
                return None
            store.append_history(conn, cp["id"], "expired", actor="system", channel="deadline", action=action,
                                 outcome="applied", detail={"on_timeout": cp["on_timeout"]})
        return Outcome("expired", resolved, outbound=self.announce_resolution(resolved))

    def cancel_run(self, run_id: str, run_status: str) -> list[dict[str, Any]]:
        """The run ended (failed/stopped) with checkpoints still open: close them as aborted by
        `system`, reason run_ended, so a still-held call is answered `abort`."""
        cancelled = []
        with self.db.write() as conn:
            for cp in store.open_of_run(conn, run_id):
                resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.cancelled, action=Action.abort,
                                         output=None, feedback=f"the run ended {run_status}", decided_by="system",
                                         reason="run_ended", channel="poller", published=False)
                if resolved is not None:
                    store.append_history(conn, cp["id"], "cancelled", actor="system", channel="poller",
                                         action=Action.abort, outcome="applied", code="run_ended",
                                         detail={"run_status": run_status})
                    cancelled.append(resolved)
        return cancelled

    def announce_resolution(self, cp: dict[str, Any]) -> list[Outbound]:
        kind = {CheckpointStatus.expired: "checkpoint.expired",
                CheckpointStatus.cancelled: "checkpoint.cancelled"}.get(cp["status"], "checkpoint.resolved")
        return reply_to_call(cp) + [self._event(kind, cp)]

    def due_ids(self) -> list[str]:
        with self.db.read() as conn:
            return store.due(conn, time.time())

    def unpublished(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return store.unpublished(conn, time.time() - self.settings.republish_after_s)

    def mark_published(self, checkpoint_id: str) -> None:
        with self.db.write() as conn:
            store.mark_published(conn, checkpoint_id)


def _winning_view(winning: dict[str, Any] | None, cp: dict[str, Any]) -> dict[str, Any] | None:
    if cp["status"] == CheckpointStatus.open:
        return None
    view = {"action": cp["action"], "decided_by": cp["decided_by"], "reason": cp["reason"],
            "resolved_at": cp["resolved_at"], "output": cp["output"], "feedback": cp["feedback"]}
    if winning:
        view["channel"] = winning["channel"]
    return view
