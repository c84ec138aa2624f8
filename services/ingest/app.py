"""ingest: the HTTP edge. FastAPI app wiring; routes live in checkpoints.py and decisions.py."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ingest import checkpoints, decisions, gateway, policies_api, runs_api
from services.ingest.fastpath import CheckpointFastPath, is_checkpoint_call
from services.ingest.http import ApiError, error_response, http_date
from shared.broker.replies import ReplyRouter
from shared.broker.signing import Verifier
from shared.logs import get_logger
from shared.settings import Settings
from shared.store import Database
from shared.store.errors import StoreUnavailable

log = get_logger(__name__)


def create_app(settings: Settings, db: Database, broker: Any, *, start_broker: bool = True,
               fast_path: bool = True, verifier: Verifier | None = None) -> IngestApp:
    """`fast_path=False` serves checkpoint calls through FastAPI's route (tests compare the two)."""
    replies = ReplyRouter(broker, settings.names, verifier=verifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_broker:
            await broker.start(wait_s=None)  # keeps retrying; readiness says when it is up
        yield
        replies.fail_all()
        await close_clients(app)
        if start_broker:
            await broker.close()

    app = IngestApp(title="dify-hitl ingest", version="0.1.0", lifespan=lifespan,
                    docs_url=None, redoc_url=None)  # the docs UI would load assets from a CDN
    app.state.settings = settings
    app.state.db = db
    app.state.broker = broker
    app.state.replies = replies
    app.state.dify_clients = {}
    app.include_router(checkpoints.router)  # documents the endpoint; CheckpointFastPath serves it
    app.include_router(policies_api.router)  # before decisions: /v1/checkpoints/bulk-decision is not an id
    app.include_router(decisions.router)
    app.include_router(runs_api.router)
    app.include_router(gateway.router)  # Dify's own paths, forwarded

    app.openapi = lambda: openapi_with_bodies(app)  # type: ignore[method-assign]

    if fast_path:
        app.fast_path = CheckpointFastPath(app.without_fast_path)  # it dates its own answers
    app.add_middleware(DateHeader)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][1:]) or "request"
        return error_response(ApiError(400, "invalid_field", f"{field}: {err['msg']}", field=field))

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return error_response(ApiError(503, "store_unavailable", "the store is not reachable right now; retry",
                                       headers={"Retry-After": "2"}))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unexpected_error", error=f"{type(exc).__name__}: {exc}")
        return error_response(ApiError(500, "internal_error", "unexpected error; it has been logged"))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = {"broker": broker.ready, "store": await asyncio.to_thread(db.ready)}
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(await asyncio.to_thread(generate_latest), media_type=CONTENT_TYPE_LATEST)

    return app


def openapi_with_bodies(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the request-body models our routes declare (http.documented) moved
    into components, where their `$ref`s point."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                components.update(operation.pop("x-hitl-schemas", {}) if isinstance(operation, dict) else {})
        app.openapi_schema = spec
    return app.openapi_schema


class IngestApp(FastAPI):
    """FastAPI, with the checkpoint call (CheckpointFastPath) taken before FastAPI's own per-request
    work: its middleware stack, and the telemetry check that reads the environment on every request
    (py-spy: ~15 % of ingest's CPU per cycle on the call it serves by the thousand)."""

    fast_path: Any = None
    rest: Any = None  # what serves all other requests: FastAPI itself unless wrapped (ingest's __main__)

    def __call__(self, scope, receive, send) -> Awaitable[None]:  # type: ignore[override]
        # Not a coroutine function: it returns the coroutine it picks, so a held call has no frame of
        # this layer (uvicorn is told the interface, "asgi3").
        if self.fast_path is not None and scope["type"] == "http" and is_checkpoint_call(scope):
            scope["app"] = self  # as Starlette sets it: the fast path reads the app's state
            return self.fast_path(scope, receive, send)
        return (self.rest or self.without_fast_path)(scope, receive, send)

    async def without_fast_path(self, scope, receive, send) -> None:
        return await super().__call__(scope, receive, send)


class DateHeader:
    """A Date header on every answer that has none (RFC 9110 asks an origin server for one); the
    gateway's answers keep Dify's own."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_date(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"date" for k, _ in headers):
                    headers.append((b"date", http_date()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_date)


async def close_clients(app: FastAPI) -> None:
    state = app.state
    if getattr(state, "run_starter", None) is not None:
        await state.run_starter.close()
    for client in state.dify_clients.values():
        await client.aclose()
    if getattr(state, "gateway_http", None) is not None:
        await state.gateway_http.aclose()
