"""Delegation and bulk decisions (reviewer tokens): claim / release / reassign a checkpoint, and the
same decision for many checkpoints at once — each decided on its own (own history row, own
idempotency key) and answered per item. All within the reviewer's apps."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.ingest.decisions import client_of, scope_of
from services.ingest.http import ApiError, check_id, compact_json, documented, read_json, read_store, validate
from services.ingest.schemas import BulkDecisionBody, ClaimBody, ReassignBody
from shared.access import may_decide
from shared.broker import BrokerError
from shared.limits import BULK_DECISION_LIMIT
from shared.models import CheckpointCommand, CheckpointStatus, DecisionSubmitted
from shared.refusals import status_of
from shared.store import checkpoints as store
from shared.topology import CHECKPOINT_COMMAND
from shared.views import public_view

router = APIRouter()
BULK_LIMIT = BULK_DECISION_LIMIT
BULK_CONCURRENCY = 16


async def command(request: Request, checkpoint_id: str, name: str, **fields: Any) -> Response:
    actor, _scope = scope_of(request)
    check_id(checkpoint_id)
    state = request.app.state
    cmd = CheckpointCommand(checkpoint_id=checkpoint_id, command=name, actor=actor, channel="api", **fields)
    try:
        reply = await state.replies.request(state.settings.names.commands, CHECKPOINT_COMMAND, cmd,
                                            state.settings.decision_reply_timeout_s)
    except BrokerError:
        raise ApiError(503, "broker_unavailable", "could not be queued; try again", headers={"Retry-After": "1"}) \
            from None
    if reply is None:
        return compact_json({"status": "accepted", "command_id": cmd.id,
                             "message": "queued; the decider has not answered yet"}, status=202)
    if reply.outcome == "done":
        return compact_json({"status": "done", "command": name, "checkpoint": reply.progress})
    code = reply.error_code or "refused"
    raise ApiError(status_of(code), code, reply.error_message or "refused", checkpoint_id=checkpoint_id)


@router.post("/v1/checkpoints/{checkpoint_id}/claim", openapi_extra=documented(ClaimBody))
async def claim(checkpoint_id: str, request: Request) -> Response:
    scope_of(request)  # who calls is checked before the body is read
    body = validate(ClaimBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    return await command(request, checkpoint_id, "claim", note=body.note)


@router.post("/v1/checkpoints/{checkpoint_id}/release", openapi_extra=documented(ClaimBody))
async def release(checkpoint_id: str, request: Request) -> Response:
    scope_of(request)
    body = validate(ClaimBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    return await command(request, checkpoint_id, "release", note=body.note)


@router.post("/v1/checkpoints/{checkpoint_id}/reassign", openapi_extra=documented(ReassignBody))
async def reassign(checkpoint_id: str, request: Request) -> Response:
    scope_of(request)
    body = validate(ReassignBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    return await command(request, checkpoint_id, "reassign", to=body.to, replace=body.replace, note=body.note)


@router.post("/v1/checkpoints/bulk-decision", openapi_extra=documented(BulkDecisionBody))
async def bulk_decision(request: Request) -> Response:
    actor, scope = scope_of(request)
    state = request.app.state
    body = validate(BulkDecisionBody, await read_json(request, state.settings.body_limit_bytes))
    if (body.ids is None) == (body.filter is None):
        raise ApiError(400, "invalid_field", "name the checkpoints by `ids` or by `filter`, one of the two",
                       field="ids")
    for cid in body.ids or []:
        check_id(cid)

    def select(conn) -> list[dict[str, Any]]:
        if body.ids is not None:
            found = (store.get(conn, cid, apps=scope) for cid in dict.fromkeys(body.ids))
            return [cp for cp in found if cp is not None and cp["status"] == CheckpointStatus.open]  # type: ignore
        f = body.filter
        assert f is not None
        # the node is part of the query, so that the cap counts only what matches
        rows, _ = store.listing(conn, apps=scope, status=CheckpointStatus.open, app=f.app, run_id=f.run_id,
                                node_id=f.node_id, limit=BULK_LIMIT + 1)
        return rows  # type: ignore[return-value]  # rows are dicts; the preview reads them as such

    items = await read_store(request, select)
    if len(items) > BULK_LIMIT:
        raise ApiError(400, "too_many", f"more than {BULK_LIMIT} checkpoints match: narrow the filter")
    missing = [cid for cid in body.ids or [] if cid not in {c["id"] for c in items}]
    if body.preview:
        return compact_json({"preview": True, "action": body.action.value, "count": len(items),
                             "checkpoints": [_preview(state.settings, actor, cp) for cp in items],
                             "not_open_or_not_found": missing})
    bulk_id = uuid.uuid4().hex[:12]
    limit = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(cp: dict[str, Any]) -> dict[str, Any]:
        decision = DecisionSubmitted(checkpoint_id=cp["id"], action=body.action, feedback=body.feedback,
                                     reason=body.reason, actor=actor, channel="api", client=client_of(request),
                                     idempotency_key=f"bulk:{bulk_id}:{cp['id']}")
        async with limit:
            try:
                reply = await state.replies.submit_decision(decision, state.settings.decision_reply_timeout_s)
            except BrokerError:
                return {"checkpoint_id": cp["id"], "status": "not_queued", "code": "broker_unavailable"}
        if reply is None:
            return {"checkpoint_id": cp["id"], "status": "accepted", "decision_id": decision.id}
        if reply.outcome in ("applied", "voted", "parked"):
            return {"checkpoint_id": cp["id"], "status": reply.outcome, "decision_id": decision.id}
        return {"checkpoint_id": cp["id"], "status": "refused", "code": reply.error_code,
                "message": reply.error_message, "decision_id": decision.id}

    results = await asyncio.gather(*(one(cp) for cp in items))
    results += [{"checkpoint_id": cid, "status": "refused", "code": "not_found"} for cid in missing]
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return compact_json({"bulk_id": bulk_id, "action": body.action.value, "counts": counts, "results": results})


def _preview(settings, actor: str, cp: dict[str, Any]) -> dict[str, Any]:
    view = public_view(cp)
    return {k: view.get(k) for k in ("id", "app", "node_id", "round", "workflow_run_id", "deadline", "assignees")} | {
        "may_decide": may_decide(settings, actor, cp.get("assignees") or [])}
