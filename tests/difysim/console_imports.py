"""The console's DSL import (fixture 17): POST /console/api/apps/imports, .../{id}/confirm, check-dependencies.

Body `{"mode": "yaml-content"|"yaml-url", "yaml_content"?, "yaml_url"?, "name"?, "description"?,
"icon_type"?, "icon"?, "icon_background"?, "app_id"?}` -> the Import answer `{id, status, app_id,
app_mode, current_dsl_version, imported_dsl_version, error}`: 200 completed / completed-with-warnings,
202 pending (a newer DSL version: nothing is created until POST .../imports/{id}/confirm, within
10 minutes, answers 200 completed), 400 failed. `app_id` overwrites that app's draft (name,
description and icon then come from the YAML). An imported app has a draft only: publish it
(console_api.py) before running it through the service API.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .apps import App, Draft, new_id
from .console_auth import console_state
from .dsl import CURRENT_DSL_VERSION, FAILED, PENDING, WORKFLOW_MODES, AppDsl, DslError, check_app, read_dsl
from .errors import ApiError, invalid_param, pydantic_message
from .service_api import json_body
from .state import SimState

PENDING_TTL_S = 600.0  # Dify keeps a pending import in Redis for 10 minutes
MAX_YAML_URL_BYTES = 10 * 1024 * 1024
IMPORT_MODES = ("yaml-content", "yaml-url")


class AppImportPayload(BaseModel):
    """Named like Dify's model so that its validation message reads the same (fixture 17)."""
    mode: str
    yaml_content: str | None = None
    yaml_url: str | None = None
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None
    app_id: str | None = None


@dataclass
class PendingImport:
    dsl: AppDsl
    payload: AppImportPayload
    expires_at: float


def answer(import_id: str, status: str, app: App | None = None, version: str = "", error: str = "",
           app_id: str | None = None) -> Response:
    body = {"id": import_id, "status": status, "app_id": app.id if app else app_id,
            "app_mode": app.mode if app else None, "current_dsl_version": CURRENT_DSL_VERSION,
            "imported_dsl_version": version, "error": error}
    return JSONResponse(body, status_code=400 if status == FAILED else 202 if status == PENDING else 200)


def failed(import_id: str, error: str) -> Response:
    return answer(import_id, FAILED, error=error)  # a failed import names no app and no version


async def fetch_yaml(state: SimState, url: str) -> str:
    if url.startswith("https://github.com/") and "/blob/" in url:  # a page, not the file: Dify asks for the raw one
        url = url.replace("https://github.com/", "https://raw.githubusercontent.com/").replace("/blob/", "/")
    try:
        response = await state.http.get(url, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DslError(f"Error fetching YAML from URL: {exc}") from None
    if len(response.content) > MAX_YAML_URL_BYTES:
        raise DslError("File size exceeds the limit of 10MB")
    if not response.content:
        raise DslError("Empty content from url")
    return response.text


def apply(state: SimState, dsl: AppDsl, payload: AppImportPayload, target: App | None) -> App:
    """Create the app (or overwrite `target`'s draft) from a checked DSL."""
    check_app(dsl, state.config.version)
    meta = dsl.app
    if target is None:
        target = state.store.create_console_app(payload.name or meta.get("name") or "Imported app",
                                                meta.get("mode"))
        chosen: dict[str, Any] = {"description": payload.description, "icon_type": payload.icon_type,
                                  "icon": payload.icon, "icon_background": payload.icon_background}
    else:
        target.name = meta.get("name") or target.name  # an overwrite takes name and looks from the YAML
        chosen = {}
    for key in ("description", "icon_type", "icon", "icon_background"):
        value = chosen.get(key) or meta.get(key)
        if value is not None:
            setattr(target, key, value)
    if target.mode in WORKFLOW_MODES:
        workflow = dsl.workflow
        target.draft = Draft(new_id(), workflow.get("graph") or {}, workflow.get("features") or {},
                             list(workflow.get("environment_variables") or []),
                             list(workflow.get("conversation_variables") or []))
    return target


async def import_app(request: Request) -> Response:
    state = console_state(request)
    try:
        payload = AppImportPayload.model_validate(await json_body(request))
    except ValidationError as exc:
        raise invalid_param(pydantic_message(exc)) from None
    if payload.mode not in IMPORT_MODES:
        raise invalid_param(f"Invalid import_mode: {payload.mode}")
    import_id = new_id()
    try:
        if payload.mode == "yaml-content":
            if not payload.yaml_content:
                raise DslError("yaml_content is required when import_mode is yaml-content")
            text = payload.yaml_content
        else:
            if not payload.yaml_url:
                raise DslError("yaml_url is required when import_mode is yaml-url")
            text = await fetch_yaml(state, payload.yaml_url)
        dsl = read_dsl(text)
        target = None
        if payload.app_id:
            target = state.store.apps_by_id.get(payload.app_id)
            if target is None:
                raise DslError("App not found")
            if target.mode not in WORKFLOW_MODES:
                raise DslError("Only workflow or advanced chat apps can be overwritten")
        if dsl.status == PENDING:
            state.pending_imports[import_id] = PendingImport(dsl, payload, time.monotonic() + PENDING_TTL_S)
            return answer(import_id, PENDING, version=dsl.version, app_id=payload.app_id)
        app = apply(state, dsl, payload, target)
    except DslError as exc:
        return failed(import_id, str(exc))
    return answer(import_id, dsl.status, app, dsl.version)


async def confirm_import(request: Request) -> Response:
    state = console_state(request)
    import_id = request.path_params["import_id"]
    pending = state.pending_imports.pop(import_id, None)
    if pending is None or pending.expires_at < time.monotonic():
        return failed(import_id, "Import information expired or does not exist")
    target = state.store.apps_by_id.get(pending.payload.app_id) if pending.payload.app_id else None
    try:
        app = apply(state, pending.dsl, pending.payload, target)
    except DslError as exc:
        return failed(import_id, str(exc))
    return answer(import_id, "completed", app, pending.dsl.version)


async def check_dependencies(request: Request) -> Response:
    state = console_state(request)
    if request.path_params["app_id"] not in state.store.apps_by_id:
        raise ApiError(404, "not_found", "App not found.")
    return JSONResponse({"leaked_dependencies": []})  # the simulator has no plugins to miss
