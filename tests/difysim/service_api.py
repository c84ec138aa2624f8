"""The Dify service API routes (/v1/...) except the logs: run, GET run, stop, re-attach, parameters."""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import sse
from .apps import App, Workflow
from .errors import ApiError, internal_server_error, invalid_param, pydantic_message, run_not_found, unauthorized
from .forms import WAITING
from .inputs import InputError, user_input_form, validate_inputs
from .runs import Run
from .snapshot import state_snapshot
from .state import SimState

TERMINAL_STATUSES = ("succeeded", "failed", "stopped", "partial-succeeded")
BLOCKING_KEYS = ("id", "workflow_id", "status", "outputs", "error", "elapsed_time", "total_tokens", "total_steps",
                 "created_at", "finished_at")


class WorkflowRunPayload(BaseModel):
    """Named like Dify's model so that validation messages read the same (fixture 12)."""
    inputs: dict[str, Any]
    files: list[Any] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    user: Any = None


def sim(request: Request) -> SimState:
    return request.app.state.sim


def authenticate(request: Request) -> App:
    header = request.headers.get("authorization")
    if header is None or " " not in header.strip():
        raise unauthorized("Authorization header must be provided and start with 'Bearer'")
    scheme, token = header.strip().split(None, 1)
    if scheme.lower() != "bearer":
        raise unauthorized("Authorization scheme must be 'Bearer'")
    app = sim(request).store.apps_by_key.get(token.strip())
    if app is None:
        raise unauthorized("Access token is invalid")
    return app


async def json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "The browser (or proxy) sent a request that this server could not "
                                           "understand.") from None
    return body if isinstance(body, dict) else {}


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def blocking_answer(run: Run, payload: dict) -> JSONResponse:
    if payload.get("status") == "paused":
        # Built from the workflow_paused data; exactly the keys of fixture 08's response.json.
        data = {"id": run.id, "workflow_id": run.workflow.id, "status": "paused", "outputs": {}, "error": None,
                "elapsed_time": payload.get("elapsed_time", run.elapsed()), "total_tokens": 0,
                "total_steps": payload.get("total_steps", run.steps), "created_at": run.created_at,
                "finished_at": None, "paused_nodes": payload.get("paused_nodes", []),
                "reasons": payload.get("reasons", [])}
    else:
        data = {key: payload.get(key) for key in BLOCKING_KEYS}
    return JSONResponse({"task_id": run.task_id, "workflow_run_id": run.id, "data": data},
                        media_type="application/json; charset=utf-8")


# ---------------------------------------------------------------- POST /v1/workflows[/{workflow_id}]/run
async def run_workflow(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    workflow = published_workflow(app)
    workflow_id = request.path_params.get("workflow_id")
    if workflow_id is not None:
        workflow = app.workflows.get(workflow_id)
        if workflow is None:
            raise ApiError(404, "not_found", "Workflow not found.")
    body = await json_body(request)
    if not body.get("user"):
        raise invalid_param("Arg user must be provided.")
    try:
        payload = WorkflowRunPayload.model_validate(body)
    except ValidationError as exc:
        raise invalid_param(pydantic_message(exc)) from None
    streaming = payload.response_mode == "streaming"
    try:
        inputs = validate_inputs(workflow.graph.start_variables(), payload.inputs)
    except InputError as exc:
        if streaming:
            # Real Dify raises this in the worker and never relays it: 200, one ping, then nothing.
            return sse.event_stream(sse.ping_then_hang(state.config))
        raise invalid_param(str(exc)) from None
    return await start(state, Run(app, workflow, state.store.end_user(app, str(body["user"])), inputs), streaming)


def published_workflow(app: App) -> Workflow:
    if app.mode != "workflow":  # e.g. a chat app imported from a DSL (message not recorded)
        raise ApiError(400, "not_workflow_app", "Please check if your Workflow app mode matches the right API route.")
    if not app.is_published:  # a console-imported app before its first publish (Dify raises ValueError)
        raise invalid_param("Workflow not published")
    return app.workflow


async def start(state: SimState, run: Run, streaming: bool) -> Response:
    """Execute `run`; answer as POST /v1/workflows/run does (a stream, or the blocking answer)."""
    if streaming:
        queue = run.subscribe()  # before the engine starts, so no event is missed
        state.start_run(run)
        return sse.event_stream(sse.relay(queue, state.config, lambda: run.unsubscribe(queue)))
    state.start_run(run)
    # shield: a blocking client that disconnects must not cancel anything but its own wait.
    payload = await asyncio.shield(run.outcome)
    return blocking_answer(run, payload)


# ---------------------------------------------------------------- GET /v1/workflows/run/{run_id}
def find_run(state: SimState, app: App, run_id: str) -> Run | None:
    run = state.store.runs.get(run_id)
    return run if run is not None and run.app is app else None


def run_record(run: Run) -> dict:
    running = run.status not in TERMINAL_STATUSES
    return {"id": run.id, "workflow_id": run.workflow.id, "status": run.status, "inputs": run.record_inputs_json(),
            "outputs": {} if running else run.outputs, "error": run.error,
            "total_steps": run.total_steps, "total_tokens": 0, "created_at": run.created_at,
            "finished_at": None if running else run.finished_at, "elapsed_time": 0.0 if running else run.elapsed_time}


async def get_run(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    run_id = request.path_params["run_id"]
    if not is_uuid(run_id):
        return internal_server_error()  # the database rejects the id: Dify answers 500 (fixture 12)
    run = find_run(state, app, run_id)
    if run is None:
        raise run_not_found()
    return JSONResponse(run_record(run))


# ---------------------------------------------------------------- POST /v1/workflows/tasks/{task_id}/stop
async def stop_task(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    body = await json_body(request)
    user = body.get("user")
    if not user:
        raise invalid_param("Arg user must be provided.")
    run = state.store.runs_by_task.get(request.path_params["task_id"])
    if run is not None and run.app is app and run.session_id == str(user):
        run.stop(state.config.stop_delay_s)
    return JSONResponse({"result": "success"})  # also for unknown tasks (fixture 11)


# ---------------------------------------------------------------- GET /v1/workflow/{run_id}/events
async def reattach(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    user = request.query_params.get("user")
    if not user:
        raise invalid_param("Arg user must be provided.")
    run_id = request.path_params["run_id"]
    run = find_run(state, app, run_id) if is_uuid(run_id) else None
    if run is None or run.session_id != user:  # a console account's run has no end user to match
        raise run_not_found(trailing_dot=False)
    if run.status in TERMINAL_STATUSES and run.final_payload is not None:
        # A finished run: one synthesized workflow_finished whose task_id is the run id (fixture 08).
        message = {"event": "workflow_finished", "task_id": run.id, "workflow_run_id": run.id,
                   "data": run.final_payload}
        return sse.event_stream(sse.single(sse.encode(message, compact=False)))
    snapshot = request.query_params.get("include_state_snapshot", "").lower() == "true"
    continue_on_pause = request.query_params.get("continue_on_pause", "").lower() == "true"
    if run.stream_ended:
        # Stopped, but the record still says running: nothing will ever come; ping until idle close.
        queue: asyncio.Queue = asyncio.Queue()
        return sse.event_stream(sse.relay(queue, state.config))
    close_on = {"workflow_finished", "workflow_paused"}
    if continue_on_pause:
        close_on.discard("workflow_paused")
        if not snapshot:
            close_on.discard("workflow_finished")  # real Dify kept this stream open after the finish (fixture 13)
    replay: list[dict] = []
    if snapshot:
        replay = state_snapshot(run, [f for f in state.forms.of_run(run) if f.status == WAITING]) \
            if run.pause_count else list(run.events)
    # Without a snapshot a paused run sends nothing until it resumes: pings only (fixture 09).
    queue = run.subscribe(replay=replay, close_on=tuple(close_on))
    return sse.event_stream(sse.relay(queue, state.config, lambda: run.unsubscribe(queue)))


# ---------------------------------------------------------------- GET /v1/parameters, /v1/info
async def parameters(request: Request) -> Response:
    app = authenticate(request)
    return JSONResponse({
        "opening_statement": None, "suggested_questions": [], "suggested_questions_after_answer": {"enabled": False},
        "speech_to_text": {"enabled": False}, "text_to_speech": {"enabled": False},
        "retriever_resource": {"enabled": False}, "annotation_reply": {"enabled": False},
        "more_like_this": {"enabled": False}, "sensitive_word_avoidance": {"enabled": False},
        "user_input_form": user_input_form(published_workflow(app).graph.start_variables()),
        "file_upload": {"image": {"enabled": False}},
        "system_parameters": {"file_size_limit": 15, "image_file_size_limit": 10, "audio_file_size_limit": 50,
                              "video_file_size_limit": 100, "workflow_file_upload_limit": 10}})


async def info(request: Request) -> Response:
    app = authenticate(request)
    return JSONResponse({"name": app.name, "description": "", "tags": [], "mode": "workflow",
                         "author_name": "difysim"})
