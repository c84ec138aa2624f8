"""The reviewer-facing API: decide, list, show. Reviewer bearer tokens only.

Decisions travel to the decider through `hitl.decisions` like a bot's; the decider's verdict comes
back on this process's reply queue (applied → 200, refused → 409/422/404).
"""
from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from shared.views import public_view
from services.ingest.http import ApiError, compact_json, read_json, reviewer_auth, validate
from services.ingest.schemas import ID_PATTERN, DecisionBody, NodeConfirmation
from shared.broker import BrokerError
from shared.models import Action, CheckpointStatus, DecisionSubmitted
from shared.store import checkpoints as store

router = APIRouter()
REFUSAL_STATUS = {"not_found": 404, "already_resolved": 409}


async def submit(request: Request, decision: DecisionSubmitted) -> Response:
    state = request.app.state
    try:
        reply = await state.replies.submit_decision(decision, state.settings.decision_reply_timeout_s)
    except BrokerError:
        raise ApiError(503, "broker_unavailable", "the decision could not be queued; try again",
                       headers={"Retry-After": "1"}) from None
    if reply is None:
        return compact_json({"status": "accepted", "decision_id": decision.id,
                             "message": "queued; the decider has not answered yet and will apply it in order"},
                            status=202)
    if reply.outcome == "applied":
        return compact_json({"status": "applied", "decision_id": decision.id,
                             "resolution": reply.resolution.model_dump(mode="json")})
    extra = {"winning_decision": reply.winning} if reply.winning else {}
    raise ApiError(REFUSAL_STATUS.get(reply.error_code, 422), reply.error_code, reply.error_message or "refused",
                   checkpoint_id=reply.checkpoint_id, **extra)


def channel_of(request: Request) -> str:
    channel = request.headers.get("x-hitl-channel", "api").strip().lower()
    return channel if channel in {"api", "cli", "console", "bot"} else "api"


@router.post("/v1/checkpoints/{checkpoint_id}/decision")
async def decide(checkpoint_id: str, request: Request) -> Response:
    reviewer = reviewer_auth(request, request.app.state.settings)
    data = await read_json(request, request.app.state.settings.body_limit_bytes)
    body = validate(DecisionBody, data)
    if body.actor and body.actor != reviewer.name:
        raise ApiError(403, "actor_mismatch", f"this token acts as {reviewer.name!r}, not {body.actor!r}")
    decision = DecisionSubmitted(
        checkpoint_id=checkpoint_id, action=body.action, feedback=body.feedback, output=body.output,
        has_output="output" in data, reason=body.reason, actor=reviewer.name, channel=channel_of(request),
        idempotency_key=body.idempotency_key, form_action=body.form_action, form_inputs=body.form_inputs)
    return await submit(request, decision)


@router.post("/api/node-confirmation")
async def node_confirmation(request: Request) -> Response:
    reviewer = reviewer_auth(request, request.app.state.settings)
    body = validate(NodeConfirmation, await read_json(request, request.app.state.settings.body_limit_bytes))
    if not body.run_id:
        raise ApiError(400, "invalid_field", "workflow_id: the run id is required (or workflow_run_id)",
                       field="workflow_id")
    decision = DecisionSubmitted(
        workflow_run_id=body.run_id, node_id=body.node_id, action=Action.approve if body.satisfied else Action.revise,
        feedback=body.feedback, actor=reviewer.name, channel=channel_of(request))
    return await submit(request, decision)


@router.get("/v1/checkpoints")
async def list_checkpoints(request: Request, status: str | None = None, app: str | None = None,
                           run_id: str | None = None, limit: int = 50, offset: int = 0) -> Response:
    state = request.app.state
    reviewer_auth(request, state.settings)
    if status is not None and status not in {s.value for s in CheckpointStatus}:
        raise ApiError(400, "invalid_field", f"status: one of {[s.value for s in CheckpointStatus]}", field="status")
    if not 1 <= limit <= 500 or offset < 0:
        raise ApiError(400, "invalid_field", "limit: 1..500, offset: >= 0", field="limit")

    def query():
        with state.db.read() as conn:
            return store.listing(conn, status=status, app=app, run_id=run_id, limit=limit, offset=offset)

    rows, total = await asyncio.to_thread(query)
    return compact_json({"total": total, "limit": limit, "offset": offset,
                         "checkpoints": [public_view(r) for r in rows]})


@router.get("/v1/checkpoints/{checkpoint_id}")
async def show_checkpoint(checkpoint_id: str, request: Request) -> Response:
    state = request.app.state
    reviewer_auth(request, state.settings)
    if not re.match(ID_PATTERN, checkpoint_id) or len(checkpoint_id) > 64:
        raise ApiError(404, "not_found", "no such checkpoint")

    def query():
        with state.db.read() as conn:
            cp = store.get(conn, checkpoint_id)
            if cp is None:
                return None
            rounds = store.rounds(conn, cp["workflow_run_id"], cp["node_id"])
            return cp, store.history_of(conn, checkpoint_id), rounds

    found = await asyncio.to_thread(query)
    if found is None:
        raise ApiError(404, "not_found", f"no checkpoint {checkpoint_id}")
    cp, history, rounds = found
    return compact_json({**public_view(cp), "history": history,
                         "rounds": [{"checkpoint_id": r["id"], "round": r["round"], "status": r["status"],
                                     "node_output": r["node_output"], "action": r["action"], "feedback": r["feedback"]}
                                    for r in rounds]})
