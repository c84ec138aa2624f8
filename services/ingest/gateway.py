"""A Dify-compatible run gateway: a client changes only its base URL (…/v1 → http://ingest/v1) and
gets Dify's exact answers — blocking JSON or the SSE stream, byte for byte — while every event is
teed to the broker so the poller records the run and its nodes live.

The caller's Dify app key picks the app (and so the Dify server) to forward to. The upstream stream
is read by its own task: if the client goes away, the run (which Dify keeps executing) is still
recorded to its end.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from services.ingest.http import ApiError, read_body
from shared.dify import SseSplitter, normalize_base_url
from shared.dify.sse import parse_sse_block
from shared.logs import get_logger
from shared.runstarter import EventTee
from shared.settings import AppConfig

log = get_logger(__name__)
router = APIRouter()
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "proxy-connection",
              "te", "trailer", "host"}
FORWARDED_REQUEST_HEADERS = ("authorization", "content-type", "accept", "accept-encoding", "user-agent")
END = object()


def dify_error(status: int, code: str, message: str) -> Response:
    """Errors in Dify's own shape: the client of a gateway expects Dify's answers."""
    return Response(json.dumps({"code": code, "message": message, "status": status}), status_code=status,
                    media_type="application/json")


def gateway_app(request: Request) -> AppConfig | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return request.app.state.settings.app_for_dify_key(key.strip())


def upstream_client(request: Request) -> httpx.AsyncClient:
    state = request.app.state
    if getattr(state, "gateway_http", None) is None:
        # No read timeout: a held checkpoint keeps a streaming run quiet (pings only) for minutes.
        state.gateway_http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None),
                                               limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
    return state.gateway_http


def _user_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("user") if isinstance(data, dict) and isinstance(data.get("user"), str) else None


# The Dify routes the gateway forwards, and nothing else. The upstream path is built from the route's
# template and its checked segments — never from the path as received, so `%2e%2e`, `%2F` or `%3F` in
# a segment cannot reach another upstream path.
SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ROUTES = (("/v1/workflows/run", ["POST"]), ("/v1/workflows/{workflow_id}/run", ["POST"]),
          ("/v1/workflows/run/{run_id}", ["GET"]), ("/v1/workflows/tasks/{task_id}/stop", ["POST"]),
          ("/v1/workflows/logs", ["GET"]), ("/v1/workflow/{run_id}/events", ["GET"]), ("/v1/parameters", ["GET"]),
          ("/v1/info", ["GET"]), ("/v1/form/human_input/{form_token}", ["GET", "POST"]))


def upstream_path(request: Request) -> str | None:
    """The Dify path for this request, or None when a segment is not a plain id."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return None
    params = request.path_params
    if not all(isinstance(v, str) and SEGMENT.match(v) for v in params.values()):
        return None
    return template.format(**params)


async def forward(request: Request) -> Response:
    app = gateway_app(request)
    if app is None or not app.watched:
        return dify_error(401, "unauthorized", "Access token is invalid")
    path = upstream_path(request)
    if path is None:
        return dify_error(404, "not_found", "Not found.")
    try:
        body = await read_body(request, request.app.state.settings.body_limit_bytes)
    except ApiError as exc:
        return dify_error(exc.status, exc.code, exc.message)
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
    url = normalize_base_url(app.dify_base_url or "") + path
    client = upstream_client(request)
    try:
        upstream_request = client.build_request(request.method, url, params=request.query_params, content=body,
                                                headers=headers)
    except httpx.InvalidURL:  # e.g. a control character in a path parameter: Dify would 404 it too
        return dify_error(404, "not_found", "Not found.")
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        log.warning("gateway.upstream_unreachable", app=app.name, error=f"{type(exc).__name__}: {exc}"[:200])
        return dify_error(502, "bad_gateway", f"Dify at {app.dify_base_url} is unreachable")
    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    tee = EventTee(request.app.state.broker, request.app.state.settings, app.name, "gateway", _user_of(body))
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        return relay_stream(upstream, response_headers, tee, request.app.state)
    content = await upstream.aread()
    await upstream.aclose()
    if request.method == "POST" and path.endswith("/run") and upstream.status_code == 200:
        keep(request.app.state, asyncio.create_task(tee_blocking_answer(tee, content)))
    return Response(content, status_code=upstream.status_code, headers=response_headers)


for _template, _methods in ROUTES:
    router.add_api_route(_template, forward, methods=_methods, include_in_schema=False)


def keep(state: Any, task: asyncio.Task[None]) -> None:
    """Hold a reference to a background task until it is done (a task nobody references may be
    collected mid-way)."""
    tasks: set[asyncio.Task[None]] | None = getattr(state, "gateway_tasks", None)
    if tasks is None:
        tasks = state.gateway_tasks = set()
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def tee_blocking_answer(tee: EventTee, content: bytes) -> None:
    """A blocking run's answer is its whole story: track the run and record how it ended."""
    try:
        answer = json.loads(content)
        run_id, data = answer["workflow_run_id"], answer.get("data") or {}
        await tee.track(run_id, answer.get("task_id"))
        ending = "workflow_paused" if data.get("status") == "paused" else "workflow_finished"
        await tee.event(run_id, {"event": ending, "workflow_run_id": run_id, "task_id": answer.get("task_id"),
                                 "data": data})
    except Exception as exc:  # the client has its answer; the poller's discovery will still find the run
        log.warning("gateway.tee_failed", error=f"{type(exc).__name__}: {exc}"[:200])


def relay_stream(upstream: httpx.Response, headers: dict[str, str], tee: EventTee, state) -> StreamingResponse:
    to_client: asyncio.Queue = asyncio.Queue()
    keep(state, asyncio.create_task(read_upstream(upstream, to_client, tee)))

    async def body():
        while (chunk := await to_client.get()) is not END:
            yield chunk

    return StreamingResponse(body(), status_code=upstream.status_code, headers=headers,
                             media_type=upstream.headers.get("content-type"))


async def read_upstream(upstream: httpx.Response, to_client: asyncio.Queue, tee: EventTee) -> None:
    """Forward raw bytes to the client at once; hand each complete event to the tee task, which
    publishes them in order (a slow or absent broker never holds up the client's stream)."""
    splitter = SseSplitter()
    to_broker: asyncio.Queue = asyncio.Queue()
    teeing = asyncio.create_task(publish_events(to_broker, tee))
    try:
        async for chunk in upstream.aiter_raw():
            to_client.put_nowait(chunk)
            for block in splitter.feed(chunk):
                event = parse_sse_block(block)
                if event is not None and not event.is_ping:
                    to_broker.put_nowait(event)
    except Exception as exc:  # upstream cut: the client sees the end; the poller polls the run anyway
        log.info("gateway.stream_cut", error=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        to_client.put_nowait(END)
        to_broker.put_nowait(END)
        await upstream.aclose()
    await teeing


async def publish_events(to_broker: asyncio.Queue, tee: EventTee) -> None:
    run_id: str | None = None
    try:
        while (event := await to_broker.get()) is not END:
            if run_id is None and event.workflow_run_id:
                run_id = event.workflow_run_id
                await _quietly(tee.track(run_id, event.task_id))
            if run_id:
                await _quietly(tee.event(run_id, event.model_dump(exclude_none=True)))
    finally:
        tee.close()  # no longer read: if the run goes on, the poller re-attaches to it


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # a broker outage must not cut the client's stream
        log.warning("gateway.tee_failed", error=f"{type(exc).__name__}: {exc}"[:200])
