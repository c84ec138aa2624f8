"""Admin hooks that start runs other ways than the service API (not Dify routes).

POST /_sim/apps/{app}/debug-run — a run started from Dify's console by an account, not an end user:
  body {"inputs": {...}, "response_mode": "blocking"|"streaming" (default blocking),
        "account": {"id"?, "name"?, "email"?} (default the simulator's admin account),
        "created_from": "installed-app" (default: the console's Explore page) | "debugging" (the canvas)}
  -> exactly what POST /v1/workflows/run answers (blocking JSON or the SSE stream).
  Dify writes an app-log row for an Explore run (created_by_role "account", created_by_account set,
  created_by_end_user null, created_from "installed-app") but none for a canvas-debugger run, which
  therefore never shows in /v1/workflows/logs. Either way there is no end user: a re-attach with
  any `user` answers 404. The published workflow runs (the real debugger runs the draft).
"""
from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .apps import DEFAULT_ACCOUNT, Account, App
from .inputs import InputError, validate_inputs
from .runs import DEBUGGING, INSTALLED_APP, Run
from .service_api import json_body, start
from .state import SimState

CONSOLE_ORIGINS = (INSTALLED_APP, DEBUGGING)


def find_app(state: SimState, id_or_name: str) -> App | None:
    return state.store.apps_by_id.get(id_or_name) or state.store.apps_by_name.get(id_or_name)


def account_of(given: object) -> Account:
    if not isinstance(given, dict) or not given:
        return DEFAULT_ACCOUNT
    email = str(given.get("email") or DEFAULT_ACCOUNT.email)
    # A stable id per e-mail when none is given, so that the same account keeps its id.
    account_id = str(given.get("id") or uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}"))
    return Account(account_id, str(given.get("name") or email.split("@")[0]), email)


def bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def debug_run(request: Request) -> Response:
    state: SimState = request.app.state.sim
    app = find_app(state, request.path_params["app"])
    if app is None or not app.is_published:
        return JSONResponse({"error": f"no published app {request.path_params['app']!r}"}, status_code=404)
    body = await json_body(request)
    created_from = body.get("created_from") or INSTALLED_APP
    if created_from not in CONSOLE_ORIGINS:
        return bad_request(f"created_from must be one of {list(CONSOLE_ORIGINS)}")
    mode = body.get("response_mode") or "blocking"
    if mode not in ("blocking", "streaming"):
        return bad_request("response_mode must be blocking or streaming")
    try:
        inputs = validate_inputs(app.workflow.graph.start_variables(), body.get("inputs") or {})
    except InputError as exc:
        return bad_request(str(exc))
    run = Run(app, app.workflow, None, inputs, account=account_of(body.get("account")), created_from=created_from)
    return await start(state, run, mode == "streaming")
