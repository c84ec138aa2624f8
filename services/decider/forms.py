"""Dify form checkpoints (native Human Input node): capture, map a decision onto the form, and follow
the delivery until the run is seen moving on.

Dify's resume is fragile (DIFY.md): a submitted form can leave the run `paused`, or end it `stopped`.
So a decision is only done on evidence that the run moved on — its stream shows the node filled, or
the run ends; a record that just reads `running` is not enough (a stop requested during the pause
leaves it so for ever). Until then the checkpoint's `delivery` says where it stands: pending →
delivered → resumed | resume_stuck | resume_unconfirmed | resumed_as_stopped, or failed / expired
with Dify's reason.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from shared.broker import Outbound
from shared.dify import form_inputs
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
    """(action id, inputs) for the form, or (None, refusal) — checked before anything is sent.

    Every input gets a value: the decision's, else Dify's resolved default. Values are checked per input
    type (shared/dify/form_inputs.py): a select takes one of its options, a file input a
    `{transfer_method, url | upload_file_id}` object (a list of them for file-list); a form holding an
    input type we do not know is refused as `unsupported_input`, never guessed at."""
    form = cp["form"] or {}
    specs = [i for i in form.get("inputs") or [] if isinstance(i, dict) and form_inputs.input_name(i)]
    action_id = _action_id(form, dec)
    if isinstance(action_id, tuple):
        return None, action_id
    unknown_types = [f"{form_inputs.input_name(i)} ({i.get('type')})" for i in specs if not form_inputs.is_known(i)]
    if unknown_types:
        return None, (Refusal.unsupported_input, f"the form has inputs of a type dify-hitl does not know: "
                                                 f"{', '.join(unknown_types)}; decide it in Dify")
    names = [form_inputs.input_name(i) for i in specs]
    given = dec.form_inputs if isinstance(dec.form_inputs, dict) else {}
    unknown = set(given) - set(names)
    if unknown:
        return None, (Refusal.unknown_input, f"the form has no input {sorted(unknown)} (inputs: {names})")
    defaults = form.get("resolved_default_values") or {}
    values: dict[str, Any] = {}
    for spec in specs:
        name = form_inputs.input_name(spec)
        assert name is not None
        value: Any
        if dec.action == Action.edit and spec is _edited_input(specs):  # the edited text wins
            value = dec.output if isinstance(dec.output, str) else json.dumps(dec.output, ensure_ascii=False)
        elif name in given:
            value = given[name]
        else:
            value = defaults.get(name)
        if form_inputs.is_empty(spec, value):
            values[name] = None
            continue
        normalized, why = form_inputs.normalize(spec, value)
        if why is not None:
            if name not in given:  # a default Dify resolved that we cannot submit back: the reviewer must give one
                values[name] = None
                continue
            return None, (Refusal.invalid_input, f"input {name} {why}")
        values[name] = normalized
    if dec.action == Action.edit and _edited_input(specs) is None:
        return None, (Refusal.no_editable_input, "the form has no text input to put the edited text in")
    missing = [n for n, v in values.items() if v is None]
    if missing:
        return None, (Refusal.missing_inputs, f"inputs without a value: {missing}")
    return action_id, values


def _action_id(form: dict[str, Any], dec: DecisionSubmitted) -> str | tuple[str, str]:
    actions = [a.get("id") for a in form.get("actions") or []]
    action_id = dec.form_action
    if action_id is None:
        wanted = {Action.approve: ("approve",), Action.edit: ("approve",), Action.revise: ("revise",),
                  Action.abort: ABORT_ACTION_IDS}[dec.action]
        action_id = next((a for a in wanted if a in actions), None)
        if action_id is None:
            return (Refusal.action_required, f"the form has no action for {dec.action.value}; "
                                             f"name one of {actions} as form_action")
    if action_id not in actions:
        return (Refusal.unknown_action, f"{action_id!r} is not an action of this form ({actions})")
    return action_id


def _edited_input(specs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where an edit's text goes: the paragraph input, else the first text input."""
    return next((i for i in specs if i.get("type") == "paragraph"), None) or \
        next((i for i in specs if i.get("type") in form_inputs.TEXT_TYPES), None)


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
        if open_ and r.run_status in ("stopped", "failed"):
            return None  # it ended under the open form, nobody submitted it: the run-ended cancel closes it
        if open_:  # somebody submitted the form in Dify itself
            return EventType.resolved, dict(status=CheckpointStatus.resolved, action=Action.approve,
                                               output=None, feedback="submitted in Dify", decided_by="dify",
                                               reason="decision", channel="dify", delivery_state="resumed")
        if delivery in ("pending", "delivered", "resume_stuck", "resume_unconfirmed"):
            stopped = r.run_status == "stopped" and cp["action"] in (Action.approve, Action.edit)
            return (EventType.resumed_as_stopped, {"delivery": "resumed_as_stopped"}) if stopped else \
                (EventType.resumed, {"delivery": "resumed"})
    return None
