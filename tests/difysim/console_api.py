"""The console routes around an app's workflow (DIFY.md "Console API"; shapes from fixture 17).

POST /console/api/apps {name, mode, description?, icon_type?, icon?, icon_background?} -> 201 the app
GET  /console/api/apps/{app_id}/workflows/draft -> the draft (keys as fixture 17's draft-after files)
POST /console/api/apps/{app_id}/workflows/draft {graph, features, environment_variables,
     conversation_variables} -> {result, hash, updated_at}; `features: {}` is stored with Dify's defaults
POST /console/api/apps/{app_id}/workflows/publish -> {result, created_at}: the draft becomes the version
     the service API runs
POST /console/api/apps/{app_id}/api-keys -> 201 {id, type, token, last_used_at, created_at}
GET  /console/api/apps/{app_id}/export -> 400, as recorded on a Dify without a plugin daemon
"""
from __future__ import annotations

import copy
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .apps import DEFAULT_ACCOUNT, App, Draft, new_id
from .console_auth import console_state
from .dsl import APP_MODES
from .errors import ApiError, invalid_param
from .service_api import json_body
from .state import SimState

# What Dify stores for `features: {}` on a draft save (fixture 17 normalisation-report.json).
DEFAULT_FEATURES = {"file_upload": {}, "text_to_speech": {"enabled": False, "voice": "", "language": ""},
                    "sensitive_word_avoidance": {"enabled": False}}


def app_of(state: SimState, request: Request) -> App:
    app = state.store.apps_by_id.get(request.path_params["app_id"])
    if app is None:
        raise ApiError(404, "not_found", "App not found.")
    return app


def app_json(app: App) -> dict:
    return {"id": app.id, "name": app.name, "description": app.description, "mode": app.mode,
            "icon_type": app.icon_type, "icon": app.icon, "icon_background": app.icon_background,
            "enable_site": True, "enable_api": True, "created_by": DEFAULT_ACCOUNT.id}


async def create_app(request: Request) -> Response:
    state = console_state(request)
    body = await json_body(request)
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise invalid_param("name is required")
    if body.get("mode") not in APP_MODES:
        raise invalid_param(f"invalid mode: {body.get('mode')}")
    app = state.store.create_console_app(body["name"], body["mode"])
    for key in ("description", "icon_type", "icon", "icon_background"):
        if body.get(key) is not None:
            setattr(app, key, body[key])
    return JSONResponse(app_json(app), status_code=201)


def draft_json(draft: Draft) -> dict:
    return {"id": draft.id, "graph": draft.graph, "features": draft.features, "hash": draft.hash,
            "version": "draft", "marked_name": "", "marked_comment": "", "created_by": DEFAULT_ACCOUNT.as_json(),
            "created_at": draft.created_at, "updated_by": None, "updated_at": draft.updated_at,
            "tool_published": False, "environment_variables": draft.environment_variables,
            "conversation_variables": draft.conversation_variables, "rag_pipeline_variables": []}


async def get_draft(request: Request) -> Response:
    app = app_of(console_state(request), request)
    if app.draft is None:
        raise ApiError(404, "draft_workflow_not_exist", "Draft workflow need to be initialized.")
    return JSONResponse(draft_json(app.draft))


async def save_draft(request: Request) -> Response:
    app = app_of(console_state(request), request)
    body = await json_body(request)
    if not isinstance(body.get("graph"), dict):
        raise invalid_param("graph is required")
    features = body.get("features") or copy.deepcopy(DEFAULT_FEATURES)
    created_at = app.draft.created_at if app.draft else int(time.time())
    app.draft = Draft(app.draft.id if app.draft else new_id(), body["graph"], features,
                      list(body.get("environment_variables") or []), list(body.get("conversation_variables") or []),
                      created_at=created_at)
    return JSONResponse({"result": "success", "hash": app.draft.hash, "updated_at": app.draft.updated_at})


async def publish(request: Request) -> Response:
    state = console_state(request)
    app = app_of(state, request)
    if app.draft is None:
        raise ApiError(404, "draft_workflow_not_exist", "Draft workflow need to be initialized.")
    app.publish(app.draft.graph)
    return JSONResponse({"result": "success", "created_at": int(time.time())})


async def create_api_key(request: Request) -> Response:
    state = console_state(request)
    app = app_of(state, request)
    token = state.store.add_api_key(app)
    return JSONResponse({"id": new_id(), "type": "app", "token": token, "last_used_at": None,
                         "created_at": int(time.time())}, status_code=201)


async def export_app(request: Request) -> Response:
    state = console_state(request)
    app_of(state, request)
    # Dify always asks its plugin daemon to resolve `dependencies`; without one it refuses (fixture 17).
    raise invalid_param("Failed to request plugin daemon, url: plugin/00000000-0000-0000-0000-000000000000/"
                        "management/installation/fetch/batch")
