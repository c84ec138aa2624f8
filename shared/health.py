"""Liveness, readiness and /metrics for processes that have no HTTP API of their own."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

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
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": results},
                            status_code=200 if ok else 503)

    async def metrics(_request):
        return Response(await asyncio.to_thread(generate_latest), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM / SIGINT to the process: the process decides the order of
    its shutdown (answer held calls, end event streams, stop consuming) before the server drains."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ops_server(host: str, port: int, checks: Callable[[], dict[str, bool]]) -> uvicorn.Server:
    app = Starlette(routes=ops_routes(checks))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    return QuietServer(config)
