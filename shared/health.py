"""Liveness, readiness and /metrics for processes that have no HTTP API of their own."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def ops_routes(checks: Callable[[], dict[str, bool]]) -> list[Route]:
    async def healthz(_request):
        return JSONResponse({"status": "ok"})

    async def readyz(_request):
        results = await asyncio.to_thread(checks)  # a hung database must not stall the event loop
        ok = all(results.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": results}, status_code=200 if ok else 503)

    async def metrics(_request):
        return Response(await asyncio.to_thread(generate_latest), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def ops_server(host: str, port: int, checks: Callable[[], dict[str, bool]]) -> uvicorn.Server:
    app = Starlette(routes=ops_routes(checks))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the process owns signal handling
    return server
