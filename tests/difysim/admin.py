"""Admin hooks under /_sim (not Dify): register apps, read the request log, inject faults, tune settings."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .apps import Draft, new_id
from .dsl import DslError, check_app, read_dsl
from .graph_checks import version_problems
from .service_api import json_body, sim


async def register_app(request: Request) -> Response:
    """{"name", "graph": {nodes, edges, viewport}, "api_key"?} or {"name", "dsl": "<app DSL YAML>", "api_key"?}
    -> 201 {"app_id", "api_key", "workflow_id"} (+ "import_status" for a DSL).

    The same name again re-publishes the app (same id and key, a new workflow version). A DSL goes
    through the console import's checks (dsl.py; a failure is 400 with its message) and is published
    at once; a DSL version that would make the console import wait for a confirmation is accepted
    here, `import_status` then reads "pending"."""
    body = await json_body(request)
    state = sim(request)
    dsl = None
    if isinstance(body.get("name"), str) and isinstance(body.get("dsl"), str):
        try:
            dsl = read_dsl(body["dsl"])
            check_app(dsl, state.config.version)
        except DslError as exc:
            return JSONResponse({"error": f"DSL import failed: {exc}"}, status_code=400)
        if dsl.app.get("mode") != "workflow":
            return JSONResponse({"error": f"only workflow apps run on the simulator, not {dsl.app.get('mode')!r}"},
                                status_code=400)
        graph = dsl.graph
    else:
        graph = body.get("graph")
        if not isinstance(body.get("name"), str) or not isinstance(graph, dict) \
                or not isinstance(graph.get("nodes"), list):
            return JSONResponse({"error": "body must be {\"name\": str, \"graph\": {\"nodes\": [...], "
                                          "\"edges\": [...]}} or {\"name\": str, \"dsl\": str}"}, status_code=400)
    problems = version_problems(graph, state.config.version)
    if problems:
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)
    app = state.store.register_app(body["name"], graph, body.get("api_key") or None)
    answer = {"app_id": app.id, "api_key": app.api_key, "workflow_id": app.current_workflow_id}
    if dsl is not None:
        workflow = dsl.workflow
        app.draft = Draft(new_id(), graph, workflow.get("features") or {},
                          list(workflow.get("environment_variables") or []),
                          list(workflow.get("conversation_variables") or []))
        answer["import_status"] = dsl.status
    return JSONResponse(answer, status_code=201)


async def list_apps(request: Request) -> Response:
    apps = sim(request).store.apps_by_id.values()
    return JSONResponse([{"app_id": a.id, "name": a.name, "api_key": a.api_key,
                          "workflow_id": a.current_workflow_id} for a in apps])


async def requests_log(request: Request) -> Response:
    """The service-API request log: [{method, path, status, time, duration_s}], oldest first."""
    state = sim(request)
    if request.method == "DELETE":
        state.requests.clear()
        return JSONResponse({"cleared": True})
    since = float(request.query_params.get("since", "0") or 0)
    return JSONResponse({"requests": [r for r in state.requests if r["time"] >= since]})


async def faults(request: Request) -> Response:
    """{"outage": bool, "status": 429|500|503|null, "latency_s": float, "resume_lost": bool,
    "resume_ends_stopped": bool}; omitted keys keep their value."""
    state = sim(request)
    if request.method == "POST":
        body = await json_body(request)
        if "outage" in body:
            state.faults.outage = bool(body["outage"])
        if "status" in body:
            state.faults.status = int(body["status"]) if body["status"] is not None else None
        if "latency_s" in body:
            state.faults.latency_s = float(body["latency_s"] or 0)
        for switch in ("resume_lost", "resume_ends_stopped"):  # Human Input form submits (state.Faults)
            if switch in body:
                setattr(state.faults, switch, bool(body[switch]))
    return JSONResponse(state.faults.as_dict())


async def settings(request: Request) -> Response:
    """{"max_execution_time_s", "ping_interval_s", "sse_idle_close_s", "human_input_check_interval_s",
    "human_input_global_timeout_s"} (the first three apply to runs started afterwards)."""
    state = sim(request)
    if request.method == "POST":
        state.config.update(await json_body(request))
    return JSONResponse(state.config.as_dict())


async def expire_human_input(request: Request) -> Response:
    """Run Dify's periodic Human Input timeout check now -> {"timed_out": [run ids], "stopped": [run ids]}:
    forms past their node timeout resume down `__timeout`, forms past the global cap stop their run."""
    return JSONResponse(sim(request).check_human_input_timeouts())


async def health(request: Request) -> Response:
    state = sim(request)
    return JSONResponse({"status": "ok", "apps": len(state.store.apps_by_id), "runs": len(state.store.runs),
                         "active_runs": len(state.tasks)})
