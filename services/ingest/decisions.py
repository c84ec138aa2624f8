"""The reviewer-facing API: decide, list, show, and what became of a decision. Reviewer tokens only.

Decisions travel to the decider through `hitl.decisions` like a bot's; the decider's verdict comes
back on this process's reply queue (applied → 200, refused → 404/409/422, kept for a checkpoint that
has not opened yet → 202 parked). A `202` is a promise: the decision is durable in its queue, and
`GET /v1/decisions/{decision_id}` says what became of it.

Everything is scoped to the apps granted to the reviewer (shared/access.py); outside them a
checkpoint answers 404, exactly like one that does not exist.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.ingest.http import (
    ApiError,
    check_id,
    compact_json,
    documented,
    page_bounds,
    read_json,
    read_store,
    reviewer_auth,
    validate,
)
from services.ingest.schemas import DecisionBody, NodeConfirmation
from shared.access import Scope, reviewer_apps
from shared.broker import BrokerError
from shared.models import Action, CheckpointStatus, DecisionSubmitted
from shared.refusals import status_of
from shared.store import checkpoints as store
from shared.store import parked
from shared.views import public_view, valid_id

router = APIRouter()


def scope_of(request: Request) -> tuple[str, Scope]:
    settings = request.app.state.settings
    reviewer = reviewer_auth(request, settings)
    return reviewer.name, reviewer_apps(settings, reviewer)


async def submit(request: Request, decision: DecisionSubmitted) -> Response:
    state = request.app.state
    try:
        reply = await state.replies.submit_decision(decision, state.settings.decision_reply_timeout_s)
    except BrokerError:
        raise ApiError(503, "broker_unavailable", "the decision could not be queued; try again",
                       headers={"Retry-After": "1"}) from None
    status_url = f"/v1/decisions/{decision.id}"
    if reply is None:
        return compact_json({"status": "accepted", "decision_id": decision.id, "status_url": status_url,
                             "message": "queued; the decider has not answered yet and will apply it in order"},
                            status=202)
    if reply.outcome == "parked":
        return compact_json({"status": "parked", "decision_id": decision.id, "status_url": status_url,
                             "message": reply.error_message}, status=202)
    if reply.outcome == "voted":
        return compact_json({"status": "voted", "decision_id": decision.id, "checkpoint_id": reply.checkpoint_id,
                             "progress": reply.progress})
    if reply.outcome == "applied" and reply.resolution is not None:
        return compact_json({"status": "applied", "decision_id": decision.id,
                             "resolution": reply.resolution.model_dump(mode="json")})
    extra = {"winning_decision": reply.winning} if reply.winning else {}
    code = reply.error_code or "refused"
    raise ApiError(status_of(code), code, reply.error_message or "refused", checkpoint_id=reply.checkpoint_id, **extra)


def client_of(request: Request) -> str | None:
    """What the caller says it is (the CLI sends `cli`): kept in the history, never taken as the channel."""
    claimed = request.headers.get("x-hitl-channel", "").strip().lower()[:32]
    return claimed if claimed.isalnum() else None


@router.post("/v1/checkpoints/{checkpoint_id}/decision", openapi_extra=documented(DecisionBody))
async def decide(checkpoint_id: str, request: Request) -> Response:
    actor, scope = scope_of(request)
    check_id(checkpoint_id)
    data = await read_json(request, request.app.state.settings.body_limit_bytes)
    body = validate(DecisionBody, data)
    if body.actor and body.actor != actor:
        raise ApiError(403, "actor_mismatch", f"this token acts as {actor!r}, not {body.actor!r}")
    # A checkpoint id exists only once its checkpoint does: an unknown one (or one outside the
    # reviewer's apps) is refused now, never with a 202 that could not be kept.
    if await read_store(request, lambda conn: store.get(conn, checkpoint_id, apps=scope)) is None:
        raise ApiError(404, "not_found", f"no checkpoint {checkpoint_id}")
    decision = DecisionSubmitted(
        checkpoint_id=checkpoint_id, action=body.action, feedback=body.feedback, output=body.output,
        has_output="output" in data, reason=body.reason, actor=actor, channel="api", client=client_of(request),
        idempotency_key=body.idempotency_key, form_action=body.form_action, form_inputs=body.form_inputs)
    return await submit(request, decision)


@router.post("/api/node-confirmation", openapi_extra=documented(NodeConfirmation))
async def node_confirmation(request: Request) -> Response:
    actor, _scope = scope_of(request)
    body = validate(NodeConfirmation, await read_json(request, request.app.state.settings.body_limit_bytes))
    if not body.run_id:
        raise ApiError(400, "invalid_field", "workflow_id: the run id is required (or workflow_run_id)",
                       field="workflow_id")
    decision = DecisionSubmitted(
        workflow_run_id=body.run_id, node_id=body.node_id, action=Action.approve if body.satisfied else Action.revise,
        feedback=body.feedback, actor=actor, channel="api", client=client_of(request))
    return await submit(request, decision)


@router.get("/v1/decisions/{decision_id}")
async def decision_status(decision_id: str, request: Request) -> Response:
    """What became of a decision: applied, refused (with the code), parked, expired, or still queued."""
    actor, scope = scope_of(request)
    check_id(decision_id)

    def query(conn) -> dict[str, Any] | None:
        row = store.decision_by_message(conn, decision_id)
        if row is not None:
            cp = store.get(conn, row["checkpoint_id"], apps=scope)
            if cp is None or row["actor"] != actor:
                return None
            return {"decision_id": decision_id, "status": "applied" if row["outcome"] == "applied" else "refused",
                    "code": row["code"], "checkpoint_id": cp["id"], "at": row["at"]}
        kept = parked.get(conn, decision_id)
        if kept is None or kept["actor"] != actor:
            return None
        return {"decision_id": decision_id, "status": kept["status"], "code": kept["code"],
                "checkpoint_id": kept["checkpoint_id"], "at": kept["settled_at"] or kept["parked_at"],
                "expires_at": kept["expires_at"]}

    found = await read_store(request, query)
    if found is None:
        # Not handled yet (still in its queue), or not this reviewer's: the same answer either way.
        return compact_json({"decision_id": decision_id, "status": "unknown",
                             "message": "no such decision of yours has been handled (yet)"}, status=404)
    return compact_json(found)


MIN_ID_PREFIX = 6


@router.get("/v1/checkpoints")
async def list_checkpoints(request: Request, status: str | None = None, app: str | None = None,
                           run_id: str | None = None, limit: int = 50, offset: int = 0,
                           id_prefix: str | None = None) -> Response:
    _actor, scope = scope_of(request)
    if status is not None and status not in {s.value for s in CheckpointStatus}:
        raise ApiError(400, "invalid_field", f"status: one of {[s.value for s in CheckpointStatus]}", field="status")
    page_bounds(limit, offset)
    if id_prefix is not None:
        return await checkpoints_by_prefix(request, scope, id_prefix, limit,
                                           combined=status is not None or app is not None or run_id is not None
                                           or offset != 0)
    rows, total = await read_store(request, lambda conn: store.listing(
        conn, apps=scope, status=status, app=app, run_id=run_id, limit=limit, offset=offset))
    return compact_json({"total": total, "limit": limit, "offset": offset,
                         "checkpoints": [public_view(r) for r in rows]})


async def checkpoints_by_prefix(request: Request, scope: Scope, prefix: str, limit: int, combined: bool) -> Response:
    """`?id_prefix=3f2a9c`: the checkpoints of the reviewer's apps whose id starts so (a short id
    typed in a terminal is resolved here, in scope like every read). A lookup, not a filter."""
    if combined:
        raise ApiError(400, "invalid_field", "id_prefix: a lookup of its own; do not combine it with status, app, "
                                             "run_id or offset", field="id_prefix")
    if len(prefix) < MIN_ID_PREFIX or not valid_id(prefix):
        raise ApiError(400, "invalid_field", f"id_prefix: at least {MIN_ID_PREFIX} id characters", field="id_prefix")
    rows, total = await read_store(request, lambda conn: store.by_id_prefix(conn, prefix, apps=scope, limit=limit))
    return compact_json({"total": total, "limit": limit, "offset": 0, "checkpoints": [public_view(r) for r in rows]})


@router.get("/v1/checkpoints/{checkpoint_id}")
async def show_checkpoint(checkpoint_id: str, request: Request) -> Response:
    _actor, scope = scope_of(request)
    check_id(checkpoint_id)

    def query(conn):
        cp = store.get(conn, checkpoint_id, apps=scope)
        if cp is None:
            return None
        rounds = store.rounds(conn, cp["app"], cp["workflow_run_id"], cp["node_id"])
        return cp, store.history_of(conn, checkpoint_id), rounds

    found = await read_store(request, query)
    if found is None:
        raise ApiError(404, "not_found", f"no checkpoint {checkpoint_id}")
    cp, history, rounds = found
    return compact_json({**public_view(cp), "history": history,
                         "rounds": [{"checkpoint_id": r["id"], "round": r["round"], "status": r["status"],
                                     "node_output": r["node_output"], "action": r["action"], "feedback": r["feedback"]}
                                    for r in rounds]})
