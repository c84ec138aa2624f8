"""The checkpoint page and its decisions.

A decision goes to the decider exactly like one from the HTTP API (DecisionSubmitted on
`hitl.decisions`, channel "console", actor = the signed-in reviewer), and its answer maps to the
same statuses: 200 applied, 202 queued, 404, 409 already_resolved (with the winning decision), 422
refused (feedback_required, max_rounds_reached, output_required, not_assignee, …).
How a checkpoint is shown and decided depends on its `kind`: templates `kinds/<kind>.html` and
`decide/<kind>.html` (falling back to the generic ones), and DECISION_BUILDERS below.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.console import render, views
from services.console.delegation import reassign_targets
from services.console.gates import commands_gate, gate
from services.console.pages import not_found, read, scope_of
from services.console.posts import answer, check_csrf
from services.console.steps import is_step
from services.console.web import BadRequest, read_form, render_page
from shared import outputs
from shared.broker import BrokerError
from shared.logs import get_logger
from shared.models import Action, DecisionSubmitted
from shared.refusals import status_of
from shared.store import checkpoints as cp_store
from shared.views import valid_id

log = get_logger(__name__)
OUTCOME_TEXT = {  # for browsers without JavaScript (a redirect carries only the code)
    "applied": "Decision applied.", "accepted": "Decision queued; the decider will apply it shortly.",
    "already_resolved": "Someone else decided first.", "not_assignee": "You are not among this checkpoint's assignees.",
    "feedback_required": "Revise needs feedback.",
    "max_rounds_reached": "This is the last round; revise is not allowed.",
    "output_required": "Edit needs the new output.", "invalid_json": "The edited output is not valid JSON.",
    "reason_required": "Abort needs a reason.", "broker_unavailable": "The decision could not be queued; try again.",
    "action_required": "Pick one of the form's actions.", "unknown_action": "The form has no such action.",
    "missing_inputs": "Every input of the form needs a value.", "unknown_input": "The form has no such input.",
    "no_editable_input": "The form has no input to put the edited text in.",
    "unsupported_input": "This form has an input dify-hitl cannot fill: decide it in Dify.",
    "invalid_input": "A value does not fit its input (a choice outside the options, a link that is not http(s)).",
    "voted": "Your vote counted; the checkpoint stays open until the quorum is reached.",
    "already_voted": "You have voted on this checkpoint already: one vote per reviewer.",
    "quorum_edit": "This checkpoint needs several approvals and an edit cannot be voted on: revise with the change.",
    "self_approval": "You started this run, so you may not approve it: revise or abort instead.",
    "claimed": "You have claimed this checkpoint: others see that you are on it.",
    "released": "The claim is released.", "reassigned": "Reassigned.",
    "not_claimable": "That claim, release or reassign does not fit this checkpoint as it is now.",
    "csrf_failed": "Missing or wrong CSRF token: reload the page and try again.",
}


async def checkpoint_page(request: Request) -> Response:
    checkpoint_id = request.path_params["checkpoint_id"]
    if not valid_id(checkpoint_id):
        return await not_found(request, None, "No such checkpoint.")

    scope = scope_of(request)

    console = request.app.state.console

    def query(conn):
        found = views.checkpoint(conn, checkpoint_id, scope, console)
        return found and {**found, "open_count": views.open_count(conn, scope)}

    data = await read(request, query)
    if data is None:
        return await not_found(request, None, f"No checkpoint {checkpoint_id}.")
    cp = data["cp"]
    outcome = request.query_params.get("outcome", "")
    settings, session = request.app.state.settings, request.state.session
    access = gate(settings, session, cp)
    return render_page(request, "checkpoint.html", scope=f"checkpoint:{cp['id']}:{cp['workflow_run_id']}",
                       gate=access, may_decide=access.allowed, color=views.checkpoint_color(cp),
                       commands=commands_gate(settings, session, cp),
                       targets=reassign_targets(settings, cp["app"]),
                       label=views.checkpoint_label(cp), outcome=OUTCOME_TEXT.get(outcome, ""), **data)


# ---------------------------------------------------------------------- deciding
def _text(form: dict[str, Any], key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def edited_output(cp: dict[str, Any], text: str) -> Any:
    """The new output from the editor, by the one edit rule (shared/outputs.py) the CLI follows too."""
    try:
        return outputs.edited_output(cp["node_output"], text)
    except outputs.InvalidOutput as exc:
        raise BadRequest(422, "invalid_json", f"The output must be valid JSON: {exc}.") from None


def standard_decision(cp: dict[str, Any], form: dict[str, Any], actor: str) -> DecisionSubmitted:
    try:
        action = Action(_text(form, "action"))
    except ValueError:
        raise BadRequest(400, "invalid_field", "action: one of approve, revise, edit, abort") from None
    key = _text(form, "idempotency_key")[:200] or None
    fields: dict[str, Any] = {}
    if action == Action.revise:
        fields["feedback"] = revise_feedback(cp, form)
    elif action == Action.edit:
        if "output" not in form and is_step(cp) and any(k.startswith("step:") for k in form):
            form = {**form, "output": json.dumps(step_output(cp, form), ensure_ascii=False)}
        if "output" not in form:
            raise BadRequest(422, "output_required", "Edit needs the new output.")
        fields.update(output=edited_output(cp, _text(form, "output")), has_output=True)
    elif action == Action.abort:
        reason = _text(form, "reason").strip()
        if not reason:
            raise BadRequest(422, "reason_required", "Say why you abort: the reason goes back to the workflow.")
        fields["reason"] = reason
    return DecisionSubmitted(checkpoint_id=cp["id"], action=action, actor=actor, channel="console",
                             idempotency_key=key, **fields)


CHANGE_HEADING = "Use this output instead:"


def revise_feedback(cp: dict[str, Any], form: dict[str, Any]) -> str:
    """A revise's feedback; under a quorum an edit cannot be voted on, so the page offers "revise with the
    change": the edited output (`proposed_output`) goes to the next round inside the feedback."""
    feedback = _text(form, "feedback")
    if "proposed_output" not in form:
        return feedback
    proposed = _text(form, "proposed_output")
    if proposed.strip() == render.as_text(cp["node_output"]).strip():
        return feedback  # nothing changed: the feedback alone (the decider wants some)
    return (feedback.strip() + "\n\n" if feedback.strip() else "") + f"{CHANGE_HEADING}\n{proposed}"


def step_output(cp: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    """A step's variables with the edited ones (`step:<node>:<var>` fields of a plain form post): text
    stays text, a variable that was JSON must still be JSON."""
    out = {node: dict(values) for node, values in cp["node_output"].items()}
    for key in form:
        if not key.startswith("step:") or key.count(":") < 2:
            continue
        node, var = key.removeprefix("step:").rsplit(":", 1)
        if node not in out or var not in out[node]:
            raise BadRequest(422, "invalid_field", f"{node}.{var} is not a variable of this step.")
        text = _text(form, key)
        if isinstance(out[node][var], str):
            out[node][var] = text
            continue
        try:
            out[node][var] = json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest(422, "invalid_json", f"{node}.{var} must stay valid JSON.") from None
    return out


FORM_ACTION_OF = {"approve": Action.approve, "revise": Action.revise, "abort": Action.abort}


def form_fields(form: dict[str, Any], cp: dict[str, Any] | None = None) -> dict[str, Any]:
    """The form's input values: `form_inputs` as a JSON object, or `input:NAME` fields of a plain form post.
    Text as it is; a select's choice checked against its options; a file input's link becomes a
    `remote_url` file (an upload cannot go through dify-hitl), a file list's links (one a line) a list."""
    given = form.get("form_inputs")
    if given is None:
        given = {k.removeprefix("input:"): _text(form, k) for k in form if k.startswith("input:")}
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise BadRequest(400, "invalid_field", "form_inputs: an object of input name → text")
    kinds = {i["name"]: i for i in render.form_inputs((cp or {}).get("form"))}
    values: dict[str, Any] = {}
    for name, raw in given.items():
        spec = kinds.get(name)
        if spec is not None and spec["type"] in ("file", "file-list") and isinstance(raw, (dict, list)):
            values[name] = raw  # already a Dify file value (an API caller)
            continue
        text = raw if isinstance(raw, str) else "" if raw is None else json.dumps(raw)
        if spec is None or spec["type"] in ("paragraph", "text_input"):
            values[name] = text
        elif spec["type"] == "select":
            if text and spec["options"] and text not in spec["options"]:
                raise BadRequest(422, "invalid_input", f"{name}: choose one of {', '.join(spec['options'])}.")
            values[name] = text
        elif spec["type"] in ("file", "file-list"):
            urls = [u.strip() for u in text.splitlines() if u.strip()]
            bad = [u for u in urls if not re.match(r"^https?://[^\s/]+", u)]
            if bad:
                raise BadRequest(422, "invalid_input", f"{name}: {bad[0][:80]!r} is not an http(s) link. Dify takes a "
                                                       "file here as a link it can fetch, or decide the form in Dify.")
            if len(urls) > 1 and spec["type"] == "file":
                raise BadRequest(422, "invalid_input", f"{name}: one file, one link.")
            files = [{"transfer_method": "remote_url", "url": u} for u in urls]
            if files:
                values[name] = files[0] if spec["type"] == "file" else files
        # an unsupported input type: nothing of ours goes in; the decider answers unsupported_input
    return values


def form_decision(cp: dict[str, Any], form: dict[str, Any], actor: str) -> DecisionSubmitted:
    """A Dify form's user action + inputs. The action id says what decision it is (approve-like ids
    approve, revise revises, abort/reject/cancel/deny/stop abort, any other id approves with that action);
    the decider checks the id and the inputs against the form (422 unknown_action, missing_inputs, …)."""
    action_id = _text(form, "form_action").strip()
    if not action_id:
        raise BadRequest(422, "action_required", "Pick one of the form's actions.")
    if len(action_id) > 64:
        raise BadRequest(422, "unknown_action", "That is not an action of this form.")
    key = _text(form, "idempotency_key")[:200] or None
    action = FORM_ACTION_OF[render.form_action_kind(action_id)]
    return DecisionSubmitted(checkpoint_id=cp["id"], action=action, actor=actor, channel="console",
                             idempotency_key=key, form_action=action_id, form_inputs=form_fields(form, cp))


# kind → builder; Dify form checkpoints send the form's action id + inputs.
DECISION_BUILDERS: dict[str, Callable[[dict[str, Any], dict[str, Any], str], DecisionSubmitted]] = {
    "http": standard_decision,
    "dify-form": form_decision,
}


async def decide(request: Request) -> Response:
    checkpoint_id = request.path_params["checkpoint_id"]
    session, state = request.state.session, request.app.state
    try:
        form = await read_form(request, state.settings.body_limit_bytes)
        check_csrf(request, form)
        scope = scope_of(request)
        row = await read(request, lambda conn: cp_store.get(conn, checkpoint_id, apps=scope)) \
            if valid_id(checkpoint_id) else None
        if row is None:
            raise BadRequest(404, "not_found", f"No checkpoint {checkpoint_id}.")
        cp = views.safe(row)
        decision = DECISION_BUILDERS.get(cp.get("kind") or "http", standard_decision)(cp, form, session.name)
        if session.method == "oidc":  # the provider's groups: the decider trusts what the console vouches for
            decision = decision.model_copy(update={"actor_groups": list(session.reviewer.groups)})
    except BadRequest as exc:
        return answer(request, checkpoint_id, exc.status, {"error": {"code": exc.code, "message": exc.message}})
    try:
        reply = await state.replies.submit_decision(decision, state.settings.decision_reply_timeout_s)
    except BrokerError:
        return answer(request, checkpoint_id, 503, {"error": {
            "code": "broker_unavailable", "message": "The decision could not be queued; try again."}})
    log.info("console.decision", checkpoint_id=checkpoint_id, action=decision.action.value, reviewer=session.name,
             outcome=reply.outcome if reply else "queued", code=reply.error_code if reply else None)
    if reply is None:
        return answer(request, checkpoint_id, 202, {
            "status": "accepted", "decision_id": decision.id,
            "message": "Queued: the decider has not answered yet and will apply it in order."})
    if reply.outcome == "voted":
        return answer(request, checkpoint_id, 200, {"status": "voted", "decision_id": decision.id,
                                                     "action": decision.action.value, "progress": reply.progress})
    if reply.outcome == "applied" and reply.resolution is not None:
        return answer(request, checkpoint_id, 200, {"status": "applied", "decision_id": decision.id,
                                                     "resolution": reply.resolution.model_dump(mode="json")})
    extra = {"winning_decision": reply.winning} if reply.winning else {}
    return answer(request, checkpoint_id, status_of(reply.error_code),
                   {"error": {"code": reply.error_code, "message": reply.error_message or "refused",
                              "checkpoint_id": reply.checkpoint_id, **extra}})
