"""Claim, release and reassign from the checkpoint page. Each goes to the decider exactly like one
from the HTTP API (`POST /v1/checkpoints/{id}/claim | release | reassign`): a CheckpointCommand on
the commands exchange, channel "console", actor = the signed-in reviewer, answered on this process's
reply queue — 200 done, 202 queued, 404, 409 already_resolved, 422 not_assignee / not_claimable.
The decider's events (checkpoint.claimed, released, reassigned) update every open page."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.console.pages import read, scope_of
from services.console.posts import answer, check_csrf, text_of
from services.console.web import BadRequest, read_form
from shared.access import in_scope, reviewer_apps
from shared.broker import BrokerError
from shared.logs import get_logger
from shared.models import CheckpointCommand
from shared.refusals import status_of
from shared.settings import Settings
from shared.store import checkpoints as cp_store
from shared.topology import CHECKPOINT_COMMAND
from shared.views import valid_id

log = get_logger(__name__)
DONE = {"claim": "claimed", "release": "released", "reassign": "reassigned"}
NOTE_LIMIT = 2000


def reassign_targets(settings: Settings, app: str) -> dict[str, list[str]]:
    """Whom a checkpoint of `app` can be handed to: the reviewers granted the app, and the groups with
    at least one such member (the decider knows a group by its members)."""
    granted = [r for r in settings.reviewers if in_scope(reviewer_apps(settings, r), app)]
    groups = sorted({g for r in granted for g in r.groups})
    return {"reviewers": sorted(r.name for r in granted), "groups": [f"group:{g}" for g in groups]}


async def command(request: Request) -> Response:
    """POST /checkpoints/{id}/claim | release | reassign (`to`, `replace`, `note`)."""
    checkpoint_id = request.path_params["checkpoint_id"]
    name = request.path_params["command"]
    session, state = request.state.session, request.app.state
    try:
        form = await read_form(request, state.settings.body_limit_bytes)
        check_csrf(request, form)
        if name not in DONE:
            raise BadRequest(404, "not_found", "No such command: claim, release or reassign.")
        scope = scope_of(request)
        row = await read(request, lambda conn: cp_store.get(conn, checkpoint_id, apps=scope)) \
            if valid_id(checkpoint_id) else None
        if row is None:
            raise BadRequest(404, "not_found", f"No checkpoint {checkpoint_id}.")
        fields = command_fields(name, form, settings=state.settings, app=row["app"])
    except BadRequest as exc:
        return answer(request, checkpoint_id, exc.status, {"error": {"code": exc.code, "message": exc.message}})
    groups = list(session.reviewer.groups) if session.method == "oidc" else None  # vouched for, like decisions
    cmd = CheckpointCommand(checkpoint_id=row["id"], command=name, actor=session.name, channel="console",
                            actor_groups=groups, **fields)
    try:
        reply = await state.replies.request(state.settings.names.commands, CHECKPOINT_COMMAND, cmd,
                                            state.settings.decision_reply_timeout_s)
    except BrokerError:
        return answer(request, checkpoint_id, 503, {"error": {
            "code": "broker_unavailable", "message": "Could not be queued; try again."}})
    log.info("console.command", checkpoint_id=checkpoint_id, command=name, reviewer=session.name,
             outcome=reply.outcome if reply else "queued", code=reply.error_code if reply else None)
    if reply is None:
        return answer(request, checkpoint_id, 202, {"status": "accepted", "command_id": cmd.id,
                                                    "message": "Queued: the decider has not answered yet."})
    if reply.outcome == "done":
        now = reply.progress or {}  # the checkpoint as it is now: only what the page shows of a claim
        return answer(request, checkpoint_id, 200, {
            "status": DONE[name], "command": name, "claimed_by": now.get("claimed_by"),
            "claimed_at": now.get("claimed_at"), "assignees": now.get("assignees")})
    code = reply.error_code or "refused"
    return answer(request, checkpoint_id, status_of(code), {"error": {
        "code": code, "message": reply.error_message or "refused", "checkpoint_id": checkpoint_id}})


def command_fields(name: str, form: dict[str, Any], *, settings: Settings, app: str) -> dict[str, Any]:
    note = text_of(form, "note").strip()
    if len(note) > NOTE_LIMIT:
        raise BadRequest(422, "invalid_field", f"note: at most {NOTE_LIMIT} characters")
    fields: dict[str, Any] = {"note": note or None}
    if name != "reassign":
        return fields
    to = text_of(form, "to").strip()
    if not to:
        raise BadRequest(422, "invalid_field", "Choose whom to reassign it to: a reviewer or a group.")
    targets = reassign_targets(settings, app)
    if to not in targets["reviewers"] and to not in targets["groups"]:
        raise BadRequest(422, "not_claimable", f"{to[:80]!r} is not a reviewer or group of app {app}.")
    replace = text_of(form, "replace").strip()
    fields.update(to=to, replace=replace or None)
    return fields
