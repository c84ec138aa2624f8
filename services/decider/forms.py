"""Dify form checkpoints (native Human Input node): capture, map a decision onto the form, and follow
the delivery until the run is seen moving on.

Dify's resume is fragile (DIFY.md): a submitted form can leave the run `paused`, or end it `stopped`.
So a decision is only done when the run is seen leaving `paused`; until then the checkpoint's
`delivery` says where it stands: pending → delivered → resumed | resume_stuck | resumed_as_stopped,
or failed / expired with Dify's reason.
"""
from __future__ import annotations

import uuid
from typing import Any

from shared.broker import Outbound
from shared.models import (
    ABORT_ACTION_IDS,
    Action,
    CheckpointRequested,
    CheckpointStatus,
    DecisionSubmitted,
    EventType,
    FormDelivery,
    FormReport,
)
from shared.refusals import Refusal
from shared.store import checkpoints as store
from shared.store.rows import CheckpointRow
from shared.topology import FORM_DELIVER

# Dify checks form expiry once a minute: our own deadline waits that long past Dify's expiry.
EXPIRY_GRACE_S = 120


def capture_values(req: CheckpointRequested, round_: int, now: float) -> dict[str, Any]:
    expires = (req.form or {}).get("expiration_time")
    deadline = float(expires) + EXPIRY_GRACE_S if expires else now + req.timeout_s
    return dict(
        id=str(uuid.uuid4()), app=req.app, kind="dify-form", workflow_run_id=req.workflow_run_id,
        node_id=req.node_id, round=round_, status=CheckpointStatus.open, mode="hold", message=req.message,
        node_output=(req.form or {}).get("resolved_default_values"), app_id=req.app_id, workflow_id=req.workflow_id,
        user=req.user, timeout_s=max(1.0, deadline - now), deadline=deadline, on_timeout="abort",
        default_output=None, assignees=req.assignees, max_rounds=req.max_rounds, created_at=now, updated_at=now,
        attach_count=1, published=True, form=req.form, secret=req.form_token)


def locate(conn, req: CheckpointRequested) -> tuple[int, CheckpointRow | None]:
    """The same form again (its token) is the same checkpoint; a new pause of the node is a new round."""
    rounds = store.rounds(conn, req.app, req.workflow_run_id, req.node_id)
    for cp in rounds:
        if cp["secret"] == req.form_token:
            return cp["round"], cp
    return (rounds[-1]["round"] + 1 if rounds else 1), None


def submission(cp: CheckpointRow, dec: DecisionSubmitted) -> tuple[str, dict[str, Any]] | tuple[None, tuple[str, str]]:
    """(action id, inputs) for the form, or (None, refusal) — checked before anything is sent."""
    form = cp["form"] or {}
    actions = [a.get("id") for a in form.get("actions") or []]
    action_id = dec.form_action
    if action_id is None:
        wanted = {Action.approve: ("approve",), Action.edit: ("approve",), Action.revise: ("revise",),
                  Action.abort: ABORT_ACTION_IDS}[dec.action]
        action_id = next((a for a in wanted if a in actions), None)
        if action_id is None:
            return None, (Refusal.action_required, f"the form has no action for {dec.action.value}; "
                                             f"name one of {actions} as form_action")
    if action_id not in actions:
        return None, (Refusal.unknown_action, f"{action_id!r} is not an action of this form ({actions})")
    names = [i.get("output_variable_name") for i in form.get("inputs") or []]
    inputs = {n: v for n, v in (form.get("resolved_default_values") or {}).items() if n in names}
    unknown = set(dec.form_inputs or {}) - set(names)
    if unknown:
        return None, (Refusal.unknown_input, f"the form has no input {sorted(unknown)} (inputs: {names})")
    inputs.update(dec.form_inputs or {})
    if dec.action == Action.edit:
        paragraph = next((i.get("output_variable_name") for i in form.get("inputs") or []
                          if i.get("type") == "paragraph"), None) or (names[0] if names else None)
        if paragraph is None:
            return None, (Refusal.no_editable_input, "the form has no input to put the edited text in")
        inputs[paragraph] = dec.output if isinstance(dec.output, str) else str(dec.output)
    missing = [n for n in names if inputs.get(n) in (None, "")]
    if missing:
        return None, (Refusal.missing_inputs, f"inputs without a value: {missing}")
    return action_id, inputs


def delivery_command(commands_exchange: str, cp: CheckpointRow, user: str | None) -> Outbound:
    out = cp["output"] or {}
    msg = FormDelivery(checkpoint_id=cp["id"], app=cp["app"], workflow_run_id=cp["workflow_run_id"],
                       form_token=cp["secret"], action=out.get("action"), inputs=out.get("inputs") or {},
                       user=user or cp["user"] or "hitl")
    return Outbound(commands_exchange, FORM_DELIVER, msg.to_bytes())


def apply_report(conn, report: FormReport, now: float) -> list[tuple[EventType, CheckpointRow]]:
    """Update delivery state from the poller's observation (of its app's runs only); returns
    (event kind, checkpoint) to announce."""
    announce: list[tuple[EventType, CheckpointRow]] = []
    if report.node_id:
        forms = [c for c in store.rounds(conn, report.app, report.workflow_run_id, report.node_id)
                 if c["kind"] == "dify-form"]
    else:
        forms = store.forms_of_run(conn, report.app, report.workflow_run_id)
    if report.checkpoint_id:
        forms = [c for c in forms if c["id"] == report.checkpoint_id] or \
            [c for c in [store.get(conn, report.checkpoint_id, apps={report.app})] if c]
    for cp in forms:
        change = _transition(cp, report, now)
        if change is None:
            continue
        kind, values = change
        state = values.pop("delivery_state", None) or values.pop("delivery")
        # The checkpoint itself closes (Dify expired the form, or it was submitted in Dify).
        if values and store.resolve(conn, cp["id"], **values, now=now, published=False) is None:
            continue
        store.set_delivery(conn, cp["id"], state, report.detail, now)
        store.append_history(conn, cp["id"], kind.value.removeprefix("checkpoint."), actor="dify", channel="poller",
                             outcome=state, code=report.outcome, at=now,
                             detail={"detail": report.detail, "run_status": report.run_status})
        current = store.get(conn, cp["id"])
        if current is not None:
            announce.append((kind, current))
    return announce


def _transition(cp: CheckpointRow, r: FormReport, now: float) -> tuple[EventType, dict[str, Any]] | None:
    open_ = cp["status"] == CheckpointStatus.open
    delivery = cp["delivery"]
    if r.outcome in ("delivered", "already_submitted") and delivery == "pending":
        return EventType.delivered, {"delivery": "delivered"}
    if r.outcome == "failed" and delivery == "pending":
        return EventType.delivery_failed, {"delivery": "failed"}
    if r.outcome in ("expired", "form_timeout") and (open_ or delivery == "pending"):
        # Dify closed the form (its timeout): the run goes on down `__timeout`, whatever we decided.
        return EventType.expired, dict(status=CheckpointStatus.expired, action=Action.abort, output=None,
                                          feedback=r.detail or "the form expired in Dify", decided_by="dify",
                                          reason="timeout", channel="dify", delivery_state="expired")
    expires = (cp["form"] or {}).get("expiration_time")
    if r.outcome == "run_resumed" and open_ and expires and float(expires) <= now:
        r = r.model_copy(update={"outcome": "form_timeout", "detail": "the form expired in Dify; the run went on "
                                                                       "down its timeout branch"})
        return _transition(cp, r, now)
    if r.outcome == "run_resumed":
        if open_:  # somebody submitted the form in Dify itself
            return EventType.resolved, dict(status=CheckpointStatus.resolved, action=Action.approve,
                                               output=None, feedback="submitted in Dify", decided_by="dify",
                                               reason="decision", channel="dify", delivery_state="resumed")
        if delivery in ("pending", "delivered", "resume_stuck"):
            stopped = r.run_status == "stopped" and cp["action"] in (Action.approve, Action.edit)
            return (EventType.resumed_as_stopped, {"delivery": "resumed_as_stopped"}) if stopped else \
                (EventType.resumed, {"delivery": "resumed"})
    return None
