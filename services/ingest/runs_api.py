"""Runs through us: start, track, list/show, re-run with changed inputs, stop; and workflow-reported
events. Reviewer tokens, except POST /v1/events (the app's checkpoint token, like a checkpoint call)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.ingest.http import (
    ApiError,
    app_auth,
    check_id,
    compact_json,
    documented,
    page_bounds,
    read_json,
    read_store,
    reviewer_auth,
    validate,
)
from shared.access import Scope, in_scope, reviewer_apps
from shared.broker import BrokerError
from shared.dify import DifyClient, DifyError, check_run_id
from shared.limits import Text, check_text_json
from shared.models import RunEvent, RunTrack
from shared.runstarter import RunNotStarted, RunStarter
from shared.store import checkpoints as checkpoint_store
from shared.store import run_tracking
from shared.store import runs as run_store
from shared.topology import RUN_EVENT, RUN_TRACK
from shared.views import ID_PATTERN, TRACKED_RUN_STATUSES, public_run, run_outcome

router = APIRouter()


# Text fields are `Text` (no NUL, no lone surrogate): what ingest accepts, every store can hold (a
# run's user and app land in text columns; issue 13).
class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: Text = Field(min_length=1, max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict)
    user: Text | None = Field(default=None, max_length=255)
    workflow_id: Text | None = Field(default=None, max_length=64)


class TrackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: Text = Field(min_length=1, max_length=64)
    app: Text = Field(min_length=1, max_length=64)


class RerunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, Any] = Field(default_factory=dict)
    app: Text | None = Field(default=None, max_length=64)
    user: Text | None = Field(default=None, max_length=255)


class WorkflowEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow_run_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    event: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    node_id: Text | None = Field(default=None, max_length=128)
    # The poller copies strings of it into text columns (a node's title, an error, the run's status).
    data: Annotated[dict[str, Any] | None, AfterValidator(check_text_json)] = None


def reviewer_scope(request: Request) -> tuple[str, Scope]:
    settings = request.app.state.settings
    reviewer = reviewer_auth(request, settings)
    return reviewer.name, reviewer_apps(settings, reviewer)


def dify_client(request: Request, app_name: str, scope: Scope) -> DifyClient:
    settings = request.app.state.settings
    app = settings.app(app_name)
    if app is None or not in_scope(scope, app_name):
        raise ApiError(404, "unknown_app", f"no app named {app_name!r} that you may use")
    if not app.watched:
        raise ApiError(422, "app_not_connected", f"app {app_name!r} has no dify_base_url / dify_api_key")
    clients = request.app.state.dify_clients
    if app_name not in clients:
        clients[app_name] = DifyClient(app, rate_per_s=app.rate_per_s or settings.dify_rate_per_s,
                                       max_concurrency=settings.dify_max_concurrency, timeout_s=settings.dify_timeout_s)
    return clients[app_name]


def starter(request: Request) -> RunStarter:
    state = request.app.state
    if getattr(state, "run_starter", None) is None:
        state.run_starter = RunStarter(state.broker, state.settings)
    return state.run_starter


def dify_failure(exc: DifyError) -> ApiError:
    status = 422 if exc.status in (400, 404, 412) else 502
    return ApiError(status, f"dify_{exc.code}", exc.message, dify_status=exc.status)


async def start_run(request: Request, app: str, scope: Scope, inputs: dict[str, Any], user: str,
                    **link: Any) -> Response:
    try:
        started = await starter(request).start(dify_client(request, app, scope), app, inputs, user=user, source="api",
                                               **link)
    except RunNotStarted as exc:
        raise ApiError(422, f"dify_{exc.code}", exc.message) from None
    except DifyError as exc:
        raise dify_failure(exc) from None
    return compact_json({"workflow_run_id": started.workflow_run_id, "task_id": started.task_id, "app": app,
                         **{k: v for k, v in link.items() if v is not None}}, status=201)


@router.post("/v1/runs", openapi_extra=documented(StartBody))
async def post_run(request: Request) -> Response:
    name, scope = reviewer_scope(request)
    body = validate(StartBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    return await start_run(request, body.app, scope, body.inputs, body.user or f"hitl:{name}",
                           workflow_id=body.workflow_id)


@router.post("/v1/runs/track", openapi_extra=documented(TrackBody))
async def track_run(request: Request) -> Response:
    _name, scope = reviewer_scope(request)
    body = validate(TrackBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    dify_client(request, body.app, scope)
    try:
        check_run_id(body.run_id)
    except DifyError:
        raise ApiError(400, "invalid_field", "run_id: must be a UUID (Dify answers 500 otherwise)",
                       field="run_id") from None
    await publish(request, RUN_TRACK, RunTrack(app=body.app, workflow_run_id=body.run_id, source="track"))
    return compact_json({"status": "tracking", "workflow_run_id": body.run_id, "app": body.app}, status=202)


@router.post("/v1/runs/{run_id}/rerun", openapi_extra=documented(RerunBody))
async def rerun(run_id: str, request: Request) -> Response:
    name, scope = reviewer_scope(request)
    check_id(run_id)
    body = validate(RerunBody, await read_json(request, request.app.state.settings.body_limit_bytes))
    known = await read_store(request, lambda conn: run_store.find(conn, run_id, {body.app} if body.app else scope))
    app = body.app or (known["app"] if known else None)
    if not app:
        raise ApiError(404, "not_found", f"run {run_id} is not tracked; pass \"app\" to re-run it anyway")
    try:
        record = await dify_client(request, app, scope).get_run(run_id)
    except DifyError as exc:
        raise dify_failure(exc) from None
    inputs = {**record.user_inputs(), **body.set}  # Dify's sys.* inputs are its own, never re-sent
    return await start_run(request, app, scope, inputs, body.user or (known["user"] if known else None)
                           or f"hitl:{name}", parent_run_id=run_id, overrides=body.set or None)


@router.post("/v1/runs/{run_id}/stop")
async def stop_run(run_id: str, request: Request) -> Response:
    _name, scope = reviewer_scope(request)
    check_id(run_id)
    run = await read_store(request, lambda conn: run_store.find(conn, run_id, scope))
    if run is None:
        raise ApiError(404, "not_found", f"run {run_id} is not tracked")
    if run["status"] == "paused":
        # Dify ignores a stop while a run is paused, and after the form's submit leaves its record
        # `running` forever (DIFY.md, fixture 11): say so instead of "stop requested".
        raise ApiError(409, "run_paused", "this run is paused at a Human Input form, and Dify ignores a stop while "
                                          "a run is paused (a later submit would leave its record 'running' forever); "
                                          "decide 'abort' on its form checkpoint instead", workflow_run_id=run_id)
    if not run["task_id"]:
        raise ApiError(409, "task_unknown", "this run was not started through dify-hitl, so its task id is unknown "
                                            "(Dify stops runs by task id only); stop it in Dify's console")
    try:
        result = await dify_client(request, run["app"], scope).stop(run["task_id"], run["user"] or "hitl")
    except DifyError as exc:
        raise dify_failure(exc) from None
    return compact_json({"status": "stop_requested", "workflow_run_id": run_id, "dify": result})


@router.get("/v1/runs")
async def list_runs(request: Request, status: str | None = None, app: str | None = None, limit: int = 50,
                    offset: int = 0) -> Response:
    _name, scope = reviewer_scope(request)
    if status is not None and status not in TRACKED_RUN_STATUSES:
        raise ApiError(400, "invalid_field", f"status: one of {list(TRACKED_RUN_STATUSES)}", field="status")
    page_bounds(limit, offset)

    def query(conn):
        rows, total = run_store.listing(conn, apps=scope, status=status, app=app, limit=limit, offset=offset)
        cps = run_tracking.checkpoints_of_runs(conn, [(r["app"], r["id"]) for r in rows])
        return [{**public_run(r), "outcome": run_outcome(cps.get((r["app"], r["id"]), []))} for r in rows], total

    runs, total = await read_store(request, query)
    return compact_json({"total": total, "limit": limit, "offset": offset, "runs": runs})


@router.get("/v1/runs/{run_id}")
async def show_run(run_id: str, request: Request) -> Response:
    _name, scope = reviewer_scope(request)
    check_id(run_id)

    def query(conn):
        run = run_store.find(conn, run_id, scope)
        if run is None:
            return None
        app = run["app"]
        cps, _ = checkpoint_store.listing(conn, apps={app}, run_id=run_id, limit=500)
        return {**public_run(run), "outcome": run_outcome(cps), "nodes": run_store.nodes_of(conn, app, run_id),
                "history": run_store.history_of(conn, app, run_id),
                "checkpoints": [{k: c[k] for k in ("id", "kind", "node_id", "round", "status", "action", "decided_by",
                                                   "delivery")} for c in cps]}

    found = await read_store(request, query)
    if found is None:
        raise ApiError(404, "not_found", f"run {run_id} is not tracked")
    return compact_json(found)


@router.post("/v1/events", openapi_extra=documented(WorkflowEvent))
async def workflow_event(request: Request) -> Response:
    app = app_auth(request, request.app.state.settings)
    body = validate(WorkflowEvent, await read_json(request, request.app.state.settings.body_limit_bytes))
    data = {**(body.data or {}), **({"node_id": body.node_id} if body.node_id else {})}
    event = {"event": body.event, "workflow_run_id": body.workflow_run_id, "data": data}
    await publish(request, RUN_EVENT, RunEvent(app=app.name, workflow_run_id=body.workflow_run_id, source="workflow",
                                               event=event))
    return compact_json({"status": "accepted"}, status=202)


async def publish(request: Request, routing_key: str, message) -> None:
    state = request.app.state
    try:
        await state.broker.publish(state.settings.names.commands, routing_key, message.to_bytes(),
                                   message_id=message.id, timeout_s=10)
    except BrokerError:
        raise ApiError(503, "broker_unavailable", "could not queue it; try again",
                       headers={"Retry-After": "1"}) from None
