"""The Starlette application: routes, Dify's response headers, the request log and fault injection."""
from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import (
    admin,
    admin_runs,
    bulk,
    console_api,
    console_auth,
    console_imports,
    files_api,
    forms_api,
    logs_api,
    service_api,
)
from .config import SimConfig
from .errors import ApiError, internal_server_error, method_not_allowed_html, not_found_html
from .state import SimState


def dify_headers(release: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-version", release.encode()), (b"x-env", b"PRODUCTION"), (b"vary", b"Cookie")]


CORS_HEADERS = [(b"access-control-allow-origin", b"*"),
                (b"access-control-expose-headers", b"X-Env, X-Trace-Id, X-Version")]


class ServiceApiMiddleware:
    """For /v1 paths: apply the configured faults, log each call, and add Dify's headers (/console: headers only)."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app, self.state = app, state
        self.dify_headers = dify_headers(state.config.version.release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/console/"):
            await self.app(scope, receive, self._with_dify_headers(send))  # no CORS, faults or log there
            return
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        started, status = time.time(), 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                is_html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                message = {**message, "headers": headers + ([] if is_html else CORS_HEADERS) + self.dify_headers}
            await send(message)

        try:
            faults = self.state.faults
            if faults.latency_s:
                await asyncio.sleep(faults.latency_s)
            fault_response = self._fault_response()
            if fault_response is not None:
                await fault_response(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            self.state.log_request(scope["method"], scope["path"], status, started)

    def _with_dify_headers(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + self.dify_headers}
            await send(message)

        return sending

    def _fault_response(self) -> Response | None:
        faults = self.state.faults
        if faults.outage:
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
        if faults.status == 500:
            return internal_server_error()
        if faults.status == 429:
            return ApiError(429, "too_many_requests", "Too many requests. Please try again later.").response()
        if faults.status:
            return ApiError(faults.status, "service_unavailable", "Service Unavailable").response()
        return None


async def api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        return method_not_allowed_html()
    return not_found_html()  # werkzeug's HTML page, not JSON (fixture 12)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    return internal_server_error()


def create_app(config: SimConfig | None = None) -> Starlette:
    state = SimState(config)
    routes = [
        Route("/v1/workflows/run", service_api.run_workflow, methods=["POST"]),
        Route("/v1/workflows/run/{run_id}", service_api.get_run, methods=["GET"]),
        Route("/v1/workflows/{workflow_id}/run", service_api.run_workflow, methods=["POST"]),
        Route("/v1/workflows/tasks/{task_id}/stop", service_api.stop_task, methods=["POST"]),
        Route("/v1/workflows/logs", logs_api.workflow_logs, methods=["GET"]),
        Route("/v1/workflow/{run_id}/events", service_api.reattach, methods=["GET"]),
        Route("/v1/form/human_input/{form_token}", forms_api.get_form, methods=["GET"]),
        Route("/v1/form/human_input/{form_token}", forms_api.submit_form, methods=["POST"]),
        Route("/v1/files/upload", files_api.upload_file, methods=["POST"]),
        Route("/v1/parameters", service_api.parameters, methods=["GET"]),
        Route("/v1/info", service_api.info, methods=["GET"]),
        Route("/console/api/setup", console_auth.setup_status, methods=["GET"]),
        Route("/console/api/setup", console_auth.setup, methods=["POST"]),
        Route("/console/api/login", console_auth.login, methods=["POST"]),
        Route("/console/api/apps", console_api.create_app, methods=["POST"]),
        Route("/console/api/apps/imports", console_imports.import_app, methods=["POST"]),
        Route("/console/api/apps/imports/{import_id}/confirm", console_imports.confirm_import, methods=["POST"]),
        Route("/console/api/apps/imports/{app_id}/check-dependencies", console_imports.check_dependencies,
              methods=["GET"]),
        Route("/console/api/apps/{app_id}/workflows/draft", console_api.get_draft, methods=["GET"]),
        Route("/console/api/apps/{app_id}/workflows/draft", console_api.save_draft, methods=["POST"]),
        Route("/console/api/apps/{app_id}/workflows/publish", console_api.publish, methods=["POST"]),
        Route("/console/api/apps/{app_id}/api-keys", console_api.create_api_key, methods=["POST"]),
        Route("/console/api/apps/{app_id}/export", console_api.export_app, methods=["GET"]),
        Route("/_sim/apps", admin.register_app, methods=["POST"]),
        Route("/_sim/apps", admin.list_apps, methods=["GET"]),
        Route("/_sim/apps/{app}/debug-run", admin_runs.debug_run, methods=["POST"]),
        Route("/_sim/apps/{app}/bulk-runs", bulk.bulk_runs, methods=["POST"]),
        Route("/_sim/requests", admin.requests_log, methods=["GET", "DELETE"]),
        Route("/_sim/faults", admin.faults, methods=["GET", "POST"]),
        Route("/_sim/config", admin.settings, methods=["GET", "POST"]),
        Route("/_sim/human_input/expire", admin.expire_human_input, methods=["POST"]),
        Route("/_sim/health", admin.health, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: unexpected_error})
    app.state.sim = state
    app.add_middleware(ServiceApiMiddleware, state=state)
    return app
