"""The Dify-facing endpoint: POST /v1/checkpoints (also /api/user-confirmation).

The HTTP node's call is held until a decision, for at most one hold window; then 503 + Retry-After,
and Dify's node retry sends the same call, which re-attaches to the same checkpoint.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.ingest.http import (
    ApiError,
    app_for_header,
    compact_json,
    documented,
    parse_json_object,
    read_body,
    validate,
)
from services.ingest.schemas import CheckpointCall
from shared import metrics
from shared.broker import BrokerError
from shared.broker.replies import ShuttingDown
from shared.logs import get_logger
from shared.models import CheckpointRequested
from shared.policy import Policy
from shared.settings import AppConfig, Settings
from shared.store import checkpoints as store
from shared.store.errors import StoreUnavailable

log = get_logger(__name__)
router = APIRouter()
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Held:
    """What a held call keeps while it waits: the request already serialized, nothing else (the
    parsed body and the validated models are gone by then; 10,000 held calls make that count)."""

    app: str
    message_id: str
    body: bytes
    window_s: float
    workflow_run_id: str
    node_id: str
    mode: str
    answer: str = "decision"  # "text": the decision's text alone (see answer_text)
    round: int | None = None


def hold_window(call: CheckpointCall, settings: Settings) -> float:
    """How long to hold this call: just under the node's read timeout when the body tells it,
    never beyond the configured maximum (proxies with short idle timeouts)."""
    if call.read_timeout_s is None:
        return min(settings.hold_default_s, settings.hold_max_s)
    return max(1.0, min(call.read_timeout_s - settings.hold_margin_s, settings.hold_max_s))


def answer(reply, form: str = "decision") -> Response:
    if reply.outcome == "pending":
        if form == "text":
            return Response(b"", media_type=TEXT)
        return compact_json({"action": "pending", "checkpoint_id": reply.checkpoint_id})
    r = reply.resolution
    if form == "text":
        return answer_text(r.action, r.output, r.feedback)
    return compact_json({"action": r.action, "checkpoint_id": r.checkpoint_id, "round": r.round, "output": r.output,
                         "feedback": r.feedback, "decided_by": r.decided_by, "reason": r.reason})


def answer_text(action: str, output: Any, feedback: str | None) -> Response:
    """`"answer": "text"`: the decision's text alone, for a workflow to use as is without a Code node —
    the output for approve and edit (a string as it is, anything else as compact JSON), the feedback
    for revise and abort."""
    if action in ("approve", "edit"):
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"), ensure_ascii=False)
    else:
        text = feedback or ""
    return Response(text.encode(), media_type=TEXT)


def still_waiting(held: Held, settings: Settings, why: str) -> Response:
    metrics.hold_windows_ended.inc()
    return compact_json(
        {"error": {"code": "decision_pending", "message": why, "workflow_run_id": held.workflow_run_id,
                   "node_id": held.node_id}},
        status=503, headers={"Retry-After": str(settings.retry_after_s)})


def prepare(state, app: AppConfig, raw: bytes) -> Held:
    """Parse and validate one authenticated checkpoint call; raises ApiError for a broken one."""
    settings: Settings = state.settings
    data = parse_json_object(raw)
    call = validate(CheckpointCall, data)
    if call.on_timeout == "default" and "default_output" not in data:
        raise ApiError(400, "invalid_field", "default_output: required when on_timeout is 'default'",
                       field="default_output")
    policy = call.policy()
    beyond_run_limit(call, policy.over(app.policy), settings)
    req = CheckpointRequested(
        app=app.name, workflow_run_id=call.workflow_run_id, node_id=call.node_id, round=call.round,
        node_output=call.node_output, message=call.message, app_id=call.app_id, workflow_id=call.workflow_id,
        user=call.user, timeout_s=call.timeout_s or settings.default_timeout_s, on_timeout=call.on_timeout,
        default_output=call.default_output, assignees=call.assignees,
        max_rounds=call.max_rounds or settings.default_max_rounds, mode=call.mode, policy=policy)
    return Held(app.name, req.id, req.to_bytes(), hold_window(call, settings), call.workflow_run_id, call.node_id,
                call.mode, call.answer, call.round)


def beyond_run_limit(call: CheckpointCall, policy: Policy, settings: Settings) -> None:
    """A held call ends with its Dify run (WORKFLOW_MAX_EXECUTION_TIME, 1200 s by default): a deadline
    or an escalation step later than that could never happen. Say so at open, never cut it silently."""
    if call.mode != "hold":
        return
    limit = settings.dify_run_limit_s
    timeout = call.timeout_s or settings.default_timeout_s
    late = [f"timeout_s {timeout:.0f}"] if timeout > limit else []
    late += [f"escalate after_s {s.after_s:.0f}" for s in policy.escalate or [] if s.after_s >= limit]
    if late:
        raise ApiError(422, "beyond_run_limit", f"{', '.join(late)} is beyond Dify's run limit of {limit:.0f}s "
                                                "(HITL_DIFY_RUN_LIMIT_S): a held call ends with its run; use "
                                                "mode \"detached\" or a Human Input node for longer waits")


async def serve_checkpoint_call(state, app: AppConfig, raw: bytes) -> Response:
    """The whole checkpoint call after the caller is known and the body is read: served by the route
    below; the fast path (fastpath.py) runs the same two steps in frames of its own."""
    admitted = await admit(state, app, raw)
    return admitted if isinstance(admitted, Response) else await hold(state, admitted)


async def admit(state, app: AppConfig, raw: bytes) -> Held | Response:
    """A checkpoint call parsed, validated and checked against the per-app cap: what to hold, or the
    answer already (a refusal; a text call whose decision is known). Raises ApiError for a broken one.
    Of the body, only the Held outlives this call."""
    settings: Settings = state.settings
    held = prepare(state, app, raw)
    structlog.contextvars.bind_contextvars(run_id=held.workflow_run_id, node_id=held.node_id)
    if held.answer == "text":
        decided = await recall(state, held)
        if decided is not None:
            return decided
    if held.mode == "hold" and state.replies.held_per_app.get(held.app, 0) >= settings.max_held_per_app:
        # A runaway workflow must not hold every socket of this process; Dify's node retry sends it again.
        metrics.http_errors.labels("too_many_held").inc()
        return compact_json({"error": {"code": "too_many_held", "message": f"app {held.app} already holds "
                                       f"{settings.max_held_per_app} calls here; retry"}},
                            status=429, headers={"Retry-After": str(settings.retry_after_s)})
    return held


async def hold(state, held: Held) -> Response:
    """Publish the request and hold the call until its answer or the end of its window."""
    settings: Settings = state.settings
    try:
        reply = await state.replies.hold_checkpoint(held.app, held.message_id, held.body, held.window_s)
    except BrokerError as exc:
        log.warning("checkpoint.broker_unavailable", error=str(exc))
        return still_waiting(held, settings, "the message broker is unavailable; retry")
    except ShuttingDown:
        return still_waiting(held, settings, "this ingest process is shutting down; retry")
    if reply is None:
        log.info("checkpoint.hold_window_ended", window_s=held.window_s)
        return still_waiting(held, settings,
                             f"no decision within this call's {held.window_s:.0f}s window; retry re-attaches")
    return answer(reply, held.answer)


async def recall(state, held: Held) -> Response | None:
    """A text call asks again for a checkpoint it names (run, node, round): it never opens one. Decided:
    answered from the store at once; still open: None, and the call is held like any other."""
    def find():
        with state.db.read() as conn:
            if held.round is not None:
                return store.by_key(conn, held.app, held.workflow_run_id, held.node_id, held.round)
            return store.latest(conn, held.app, held.workflow_run_id, held.node_id)
    try:
        cp = await asyncio.to_thread(find)
    except StoreUnavailable:
        return still_waiting(held, state.settings, "the store is not reachable right now; retry")
    if cp is None:
        raise ApiError(404, "not_found", "no checkpoint for this run, node and round: a text answer names a "
                                         "checkpoint that was called before")
    if cp["status"] == "open":
        return None
    return answer_text(cp["action"] or "", cp["output"], cp["feedback"])


@router.post("/v1/checkpoints", openapi_extra=documented(CheckpointCall))
@router.post("/api/user-confirmation", openapi_extra=documented(CheckpointCall))
async def checkpoint_call(request: Request) -> Response:
    # Who calls is checked before the body is read: an unknown caller costs no memory.
    app = app_for_header(request.headers.get("authorization", ""), request.app.state.settings)
    raw = await read_body(request, request.app.state.settings.body_limit_bytes)
    return await serve_checkpoint_call(request.app.state, app, raw)
