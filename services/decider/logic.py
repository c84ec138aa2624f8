"""The checkpoint state machine: requests and decisions. Plain synchronous functions over the store
that return what must be published once their transaction has committed; the handlers in
service.py run them in the store executor and the router publishes what they return.

Idempotent by construction: a redelivered request re-attaches or replays; a redelivered decision
(same message id or idempotency key) finds its recorded outcome and re-emits the same messages.
Every lookup is scoped: a checkpoint is found by (app, run, node, round), a decision only within the
apps its actor may decide for. A decision whose checkpoint has not opened yet is parked and applied
when it opens (shared/store/parked.py).
"""
from __future__ import annotations

import uuid
from typing import Any

from services.decider import forms, policy, votes
from services.decider.outcomes import Decided, Outcome, OutcomeKind, Refused, answer, event, reply_to_call, winning_view
from shared.access import ALL, Scope, may_decide
from shared.broker import Outbound
from shared.models import (
    Action,
    CheckpointRequested,
    CheckpointStatus,
    DecisionEvent,
    DecisionSubmitted,
    EventType,
    Reply,
)
from shared.refusals import Refusal
from shared.settings import Settings
from shared.store import Database, parked, timers
from shared.store import checkpoints as store
from shared.store.audit import shown_hash
from shared.store.rows import CheckpointRow

PARK: Refused = ("park", "")  # what _target says for a decision whose checkpoint has not opened


class Decider:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.events_exchange = settings.names.events

    def event(self, kind: EventType, cp: CheckpointRow, decision: dict[str, Any] | None = None) -> Outbound:
        return event(self.events_exchange, kind, cp, decision)

    # ------------------------------------------------------------------ checkpoint requests
    def on_request(self, req: CheckpointRequested, reply_to: str | None, correlation_id: str | None,
                   redelivered: bool = False) -> Outcome:
        if req.kind == "dify-form":
            return self.on_form_captured(req, redelivered)
        with self.db.write() as conn:
            now = self.db.now()
            # With the round in the call (the recipe sends it) the insert comes first: a new
            # checkpoint, the common case, then costs two statements.
            round_, existing = (req.round, None) if req.round is not None else self._locate_round(conn, req)
            cp = None if existing is not None else self._open(
                conn, self._new_row(req, round_, reply_to, correlation_id, now), "opened", req,
                {"round": round_, "mode": req.mode}, now)
            created = cp is not None
            taken: list[tuple[DecisionSubmitted, Decided]] = []
            if cp is not None:
                parked.serialize(conn, req.workflow_run_id, req.node_id)
                taken = self._take_parked(conn, cp, now)
                cp = next((d.checkpoint for _, d in taken if d.applied), cp)
            else:
                cp = existing or store.by_key(conn, req.app, req.workflow_run_id, req.node_id, round_)
                assert cp is not None  # the insert conflicted with it
                if cp["status"] == CheckpointStatus.open:
                    store.attach(conn, cp["id"], reply_to, correlation_id, now)
                    store.append_history(conn, cp["id"], "reattached", channel="dify", message_id=req.id,
                                         detail={"attempt": cp["attach_count"] + 1}, at=now)
        outcome = self._request_outcome(cp, created, reply_to, correlation_id, redelivered)
        for dec, decided in taken:
            outcome.outbound += self._decision_messages(dec, decided, announce_open=False)
            if decided.applied:
                outcome.applied_parked.append(decided.checkpoint)
        return outcome

    @staticmethod
    def _open(conn, values: dict[str, Any], kind: str, req: CheckpointRequested, detail: dict[str, Any],
              now: float) -> CheckpointRow | None:
        """Insert a new checkpoint with its first history row (which hashes what the reviewer is
        shown) and start its policy's timers; None when its key exists already."""
        first = dict(at=now, kind=kind, actor=req.user, channel="dify", action=None, outcome=None, code=None,
                     message_id=req.id, idempotency_key=None, detail={**detail, "shown": shown_hash(values)})
        cp = store.insert_with_history(conn, values, first)
        if cp is not None:
            for kind_, step, due_at in policy.timers_for(cp["policy"] or {}, cp["created_at"], cp["deadline"]):
                timers.schedule(conn, cp["id"], kind_, step, due_at)
        return cp

    def _new_row(self, req: CheckpointRequested, round_: int, reply_to: str | None, correlation_id: str | None,
                 now: float) -> dict[str, Any]:
        snapshot, assignees = policy.effective(self.settings, req)
        return dict(
            id=str(uuid.uuid4()), app=req.app, kind=req.kind, workflow_run_id=req.workflow_run_id,
            node_id=req.node_id, round=round_, status=CheckpointStatus.open, mode=req.mode,
            message=req.message, node_output=req.node_output, app_id=req.app_id, workflow_id=req.workflow_id,
            user=req.user, timeout_s=req.timeout_s, deadline=now + req.timeout_s, on_timeout=req.on_timeout,
            default_output=req.default_output, assignees=assignees, max_rounds=req.max_rounds,
            created_at=now, updated_at=now, reply_to=reply_to, correlation_id=correlation_id,
            attach_count=1, published=True, policy=snapshot)

    @staticmethod
    def _locate_round(conn, req: CheckpointRequested) -> tuple[int, CheckpointRow | None]:
        """Without an explicit round: after a revise, a call carrying a new output is the next round;
        the same output again is Dify re-sending the call that was already answered."""
        last = store.latest(conn, req.app, req.workflow_run_id, req.node_id)
        if last is None:
            return 1, None
        if (last["status"] == CheckpointStatus.resolved and last["action"] == Action.revise
                and last["node_output"] != req.node_output):
            nxt = last["round"] + 1
            return nxt, store.by_key(conn, req.app, req.workflow_run_id, req.node_id, nxt)
        return last["round"], last

    def _request_outcome(self, cp: CheckpointRow, created: bool, reply_to: str | None,
                         correlation_id: str | None, redelivered: bool) -> Outcome:
        out: list[Outbound] = []
        if created or redelivered:  # redelivered: the first attempt may have died before announcing it
            out.append(self.event(EventType.opened, cp))
        if cp["status"] != CheckpointStatus.open:
            return Outcome("opened" if created else "replayed", cp,
                           outbound=out + reply_to_call(cp, reply_to, correlation_id))
        if cp["mode"] == "detached" and reply_to:
            body = Reply(outcome="pending", checkpoint_id=cp["id"]).to_bytes()
            out.append(Outbound("", reply_to, body, correlation_id, persistent=False))
        return Outcome("opened" if created else "reattached", cp, outbound=out)

    # ------------------------------------------------------------------ decisions
    def on_decision(self, dec: DecisionSubmitted, scope: Scope, reply_to: str | None = None,
                    correlation_id: str | None = None) -> Outcome:
        """Apply a decision within `scope` (the apps its actor may decide for)."""
        with self.db.write() as conn:
            now = self.db.now()
            target = self._target(conn, dec, scope)
            if target == PARK:
                # Look again once no checkpoint of (run, node) can be opening unseen (parked.serialize).
                parked.serialize(conn, dec.workflow_run_id or "", dec.node_id or "")
                target = self._target(conn, dec, scope)
            if isinstance(target, tuple):
                code, message = target
                if target == PARK:
                    return answer(self._park(conn, dec, scope, now), reply_to, correlation_id)
                return answer(Outcome("rejected", None, code, message), reply_to, correlation_id)
            decided = self._decide(conn, target, dec, now)
        messages = self._decision_messages(dec, decided, announce_open=True)
        if decided.voted:
            return answer(Outcome("voted", decided.checkpoint, outbound=messages), reply_to, correlation_id)
        if decided.duplicate_of is not None:
            seen = decided.duplicate_of["outcome"]
            if seen == "voted" and decided.checkpoint["status"] == CheckpointStatus.open:
                return answer(Outcome("voted", decided.checkpoint, outbound=messages), reply_to, correlation_id)
            kind: OutcomeKind = "duplicate" if seen == "applied" else "rejected"
            seen_code = decided.duplicate_of["code"] or (Refusal.already_voted if seen == "voted" else None)
            seen_why = {"rejected": "the same decision was already refused",
                        "voted": "this vote was counted already"}.get(seen or "")
            outcome = Outcome(kind, decided.checkpoint, seen_code, seen_why, messages)
            return answer(outcome, reply_to, correlation_id, winning_view(decided.winning, decided.checkpoint),
                          applied=kind == "duplicate")
        if decided.refusal is not None:
            outcome = Outcome("rejected", decided.checkpoint, decided.refusal[0], decided.refusal[1], messages)
            return answer(outcome, reply_to, correlation_id, winning_view(decided.winning, decided.checkpoint))
        return answer(Outcome("applied", decided.checkpoint, outbound=messages), reply_to, correlation_id)

    def _target(self, conn, dec: DecisionSubmitted, scope: Scope) -> CheckpointRow | Refused:
        if dec.checkpoint_id:
            cp = store.get(conn, dec.checkpoint_id, apps=scope)
            return cp if cp is not None else (Refusal.not_found, "no such checkpoint")
        if not (dec.workflow_run_id and dec.node_id):
            return Refusal.not_found, "name the checkpoint (checkpoint_id, or workflow_run_id and node_id)"
        if scope is not ALL and not scope:
            return Refusal.not_found, "no such checkpoint"
        found = store.latest_in_apps(conn, scope, dec.workflow_run_id, dec.node_id)
        if not found:
            return PARK  # its checkpoint has not opened yet: keep the decision for it
        open_ = [c for c in found if c["status"] == CheckpointStatus.open]
        if len(open_) > 1:
            return Refusal.ambiguous, (f"run {dec.workflow_run_id} node {dec.node_id} is open in several apps "
                                       f"({sorted(c['app'] for c in open_)}): name the checkpoint_id")
        return open_[0] if open_ else max(found, key=lambda c: c["created_at"])

    def _park(self, conn, dec: DecisionSubmitted, scope: Scope, now: float) -> Outcome:
        apps = sorted(scope) if scope is not None else sorted(a.name for a in self.settings.apps)
        assert dec.workflow_run_id and dec.node_id
        fresh = parked.park(conn, message_id=dec.id, run_id=dec.workflow_run_id, node_id=dec.node_id, apps=apps,
                            actor=dec.actor, decision=dec.model_dump(mode="json"), now=now,
                            ttl_s=self.settings.parked_decision_ttl_s)
        message = (f"no checkpoint for run {dec.workflow_run_id} node {dec.node_id} yet: the decision is kept for "
                   f"{self.settings.parked_decision_ttl_s:.0f}s and applied when it opens")
        body = DecisionEvent(type=EventType.decision_parked.value, decision=dec.model_dump(mode="json"),
                             apps=apps).to_bytes()
        outbound = [Outbound(self.events_exchange, EventType.decision_parked.value, body)] if fresh else []
        return Outcome("parked", None, None, message, outbound)

    def _take_parked(self, conn, cp: CheckpointRow, now: float) -> list[tuple[DecisionSubmitted, Decided]]:
        """Apply the decisions that waited for this checkpoint, oldest first; the first valid wins."""
        taken = []
        for row in parked.waiting_for(conn, cp["app"], cp["workflow_run_id"], cp["node_id"]):
            dec = DecisionSubmitted.model_validate(row["decision"])
            decided = self._decide(conn, cp, dec, now)
            parked.settle(conn, row["id"], "applied" if decided.applied else "refused", now, checkpoint_id=cp["id"],
                          code=decided.refusal[0] if decided.refusal else None)
            cp = decided.checkpoint
            taken.append((dec, decided))
        return taken

    def _decide(self, conn, cp: CheckpointRow, dec: DecisionSubmitted, now: float) -> Decided:
        earlier = store.earlier_attempt(conn, cp["id"], dec.id, dec.idempotency_key)
        if earlier is not None:
            return Decided(cp, applied=False, duplicate_of=earlier, winning=store.winning_decision(conn, cp["id"]))
        detail: dict[str, Any] = {"feedback": dec.feedback, "reason": dec.reason}
        if dec.has_output:
            detail["output"] = dec.output
        if dec.client:
            detail["client"] = dec.client  # what the caller said it was; the channel is what we observed
        refusal = self.refusal(cp, dec)
        output = {Action.approve: cp["node_output"], Action.edit: dec.output}.get(dec.action)
        if refusal is None and cp["kind"] == "dify-form":
            action_id, mapped = forms.submission(cp, dec)
            if action_id is None:
                refusal = mapped  # type: ignore[assignment]
            output = {"action": action_id, "inputs": mapped}
        if refusal is None and policy.required(cp) > 1:
            decided = votes.vote(conn, cp, dec, now, detail, output)
        elif refusal is None:
            decided = self._resolve(conn, cp, dec, now, detail, output)
        else:
            decided = votes.refused(conn, cp, dec, now, detail, refusal)
        if decided.applied and cp["kind"] == "dify-form":
            store.set_delivery(conn, cp["id"], "pending", None, now)
            decided.checkpoint["delivery"] = "pending"
        return decided

    def _resolve(self, conn, cp: CheckpointRow, dec: DecisionSubmitted, now: float, detail: dict[str, Any],
                 output: Any) -> Decided:
        feedback = dec.feedback if dec.feedback is not None else dec.reason
        fields: dict[str, Any] = dict(status=CheckpointStatus.resolved, action=dec.action, output=output,
                                      feedback=feedback, decided_by=dec.actor, reason="decision",
                                      channel=dec.channel, now=now)
        row = dict(at=now, kind="decision", actor=dec.actor, channel=dec.channel, action=dec.action, outcome="applied",
                   code=None, message_id=dec.id, idempotency_key=dec.idempotency_key, detail=detail)
        # The common case in two statements; when another row was appended since `cp` was read (or a
        # decision won meanwhile), under the row's lock.
        resolved = store.resolve_with_history(conn, cp, row, **fields)
        if resolved is not None:
            return Decided(resolved, applied=True)
        current = store.lock(conn, cp["id"]) or cp
        resolved = store.resolve(conn, cp["id"], **fields) if current["status"] == CheckpointStatus.open else None
        if resolved is None:  # another decision won between our read and our update
            return votes.refused(conn, current, dec, now, detail, self.refusal(current, dec)
                                 or (Refusal.already_resolved, "another decision won"))
        store.append_history(conn, cp["id"], "decision", actor=dec.actor, channel=dec.channel, action=dec.action,
                             outcome="applied", message_id=dec.id, idempotency_key=dec.idempotency_key,
                             detail=detail, at=now)
        return Decided(resolved, applied=True)

    def refusal(self, cp: CheckpointRow, dec: DecisionSubmitted) -> Refused | None:
        if cp["status"] != CheckpointStatus.open:
            return Refusal.already_resolved, f"checkpoint is {cp['status']} ({cp['action']} by {cp['decided_by']})"
        http = cp["kind"] == "http"  # a Dify form has its own actions: no rounds of ours to count
        if http and dec.action == Action.revise and not (dec.feedback or "").strip():
            return Refusal.feedback_required, "revise needs feedback for the next round"
        if http and dec.action == Action.revise and cp["round"] >= cp["max_rounds"]:
            return Refusal.max_rounds_reached, f"round {cp['round']} is the last of max_rounds={cp['max_rounds']}"
        if dec.action == Action.edit and not dec.has_output:
            return Refusal.output_required, "edit needs the new output"
        if not may_decide(self.settings, dec.actor, cp["assignees"], dec.actor_groups):
            return Refusal.not_assignee, f"{dec.actor} is not among the assignees {cp['assignees']}"
        snapshot = cp.get("policy") or {}
        if (snapshot.get("no_self_approval") and dec.action in (Action.approve, Action.edit)
                and policy.is_self(self.settings, cp, dec.actor)):
            return Refusal.self_approval, f"{dec.actor} started this run ({cp['user']}) and may not approve it"
        if policy.required(cp) > 1 and dec.action == Action.edit:
            return Refusal.quorum_edit, (f"this checkpoint needs {policy.required(cp)} approvals: an edit cannot "
                                         "be voted on — revise with the change instead")
        return None

    def _decision_messages(self, dec: DecisionSubmitted, decided: Decided, *, announce_open: bool) -> list[Outbound]:
        """Events, the held call's answer and a form delivery for one decision's result."""
        cp = decided.checkpoint
        if decided.voted:
            return [self.event(EventType.voted, cp, {**dec.model_dump(mode="json"), "progress": cp.get("tally")})]
        if decided.duplicate_of is not None:
            if decided.duplicate_of["outcome"] != "applied":
                return []
            out = reply_to_call(cp) + [self.event(EventType.resolved, cp)]
            if cp["kind"] == "dify-form" and cp["delivery"] == "pending":  # the first delivery may be lost
                out.append(forms.delivery_command(self.settings.names.commands, cp, decided.duplicate_of["actor"]))
            return out
        if decided.refusal is not None:
            return [self.event(EventType.decision_rejected, cp,
                               {**dec.model_dump(mode="json"), "code": decided.refusal[0]})]
        out = (reply_to_call(cp) if announce_open else []) + [
            self.event(EventType.resolved, cp, dec.model_dump(mode="json"))]
        if cp["kind"] == "dify-form":
            out.append(forms.delivery_command(self.settings.names.commands, cp, dec.actor))
        return out

    # ------------------------------------------------------------------ Dify form checkpoints
    def on_form_captured(self, req: CheckpointRequested, redelivered: bool) -> Outcome:
        """A Dify form (Human Input pause): the same form again (its token) is the same checkpoint."""
        taken: list[tuple[DecisionSubmitted, Decided]] = []
        with self.db.write() as conn:
            now = self.db.now()
            round_, cp = forms.locate(conn, req)
            created = False
            if cp is None:
                snapshot, assignees = policy.effective(self.settings, req)
                values = {**forms.capture_values(req, round_, now), "policy": snapshot, "assignees": assignees}
                new = self._open(conn, values, "captured", req,
                                 {"round": round_, "node_title": (req.form or {}).get("node_title")}, now)
                if new is not None:
                    created = True
                    parked.serialize(conn, req.workflow_run_id, req.node_id)
                    taken = self._take_parked(conn, new, now)
                    cp = next((d.checkpoint for _, d in taken if d.applied), new)
                else:
                    cp = store.by_key(conn, req.app, req.workflow_run_id, req.node_id, round_)
                    assert cp is not None  # the insert conflicted with it
        outcome = Outcome("opened" if created else "replayed", cp,
                          outbound=[self.event(EventType.opened, cp)] if created or redelivered else [])
        for dec, decided in taken:
            outcome.outbound += self._decision_messages(dec, decided, announce_open=True)
            if decided.applied:
                outcome.applied_parked.append(decided.checkpoint)
        return outcome
