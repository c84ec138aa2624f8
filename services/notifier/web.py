"""The notifier's HTTP server: platform callbacks, decision links, and the ops endpoints.

| path | what |
|---|---|
| `POST /callbacks/{channel}` | Slack interactivity, Feishu card callbacks, WeCom events (and DingTalk robot messages) |
| `GET /callbacks/wecom` | WeCom's URL verification (the decrypted `echostr`) |
| `GET /decide/{token}` | a decision link's confirmation page (decides nothing) |
| `POST /decide/{token}` | the page's form: decides once |
| `/healthz`, `/readyz`, `/metrics` | as every process |

A callback is answered at once with what its adapter says (Slack and Feishu want an answer within
3 s); the click is decided after the answer went out, and the adapter's follow-up (Slack's modal)
runs last. Errors are `{"error": {"code", "message"}}` and never carry a secret.
"""
from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.notifier import metrics
from services.notifier.channels.base import CallbackRefused, CallbackRequest, CallbackResult, Channel, ChannelError
from services.notifier.decisions import Decisions
from services.notifier.links import LinkSigner, links_app
from shared.health import ops_routes
from shared.logs import get_logger

log = get_logger(__name__)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` (callbacks are small; never buffer a flood)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return raw


def create_app(channels: dict[str, Channel], decisions: Decisions, signer: LinkSigner, *, body_limit: int,
               ready: Any, lifespan: Any = None) -> Starlette:
    async def callback(request: Request) -> Response:
        name = request.path_params["channel"]
        adapter = channels.get(name)
        if adapter is None:
            return error(404, "not_found", f"no channel {name[:32]!r} is configured here")
        body = await read_body(request, body_limit)
        if body is None:
            return error(413, "body_too_large", f"a callback is at most {body_limit} bytes")
        received_at = time.time()
        req = CallbackRequest(request.method, request.url.path, dict(request.headers), dict(request.query_params),
                              body)
        try:
            result = adapter.parse_callback(req)
        except CallbackRefused as exc:
            return Response(*_refusal(exc), background=BackgroundTask(decisions.refused, name, exc))
        answer, told = result.answer, False
        if result.click is not None:
            answer, told = decisions.early_answer(adapter, result.click, answer)
        task = BackgroundTask(after_answer, adapter, result, received_at, told)
        return Response(answer.body, answer.status, headers=answer.headers, background=task)

    async def after_answer(adapter: Channel, result: CallbackResult, received_at: float, told: bool) -> None:
        try:
            if result.click is not None:
                await decisions.on_click(adapter, result.click, received_at, told)
            else:
                metrics.callbacks.labels(adapter.name, "ignored").inc()
            if result.follow_up is not None:
                await result.follow_up()
        except ChannelError as exc:
            log.warning("callback.follow_up_failed", channel=adapter.name, code=exc.code)
        except Exception as exc:  # the answer went out already: say what happened, never crash the server
            log.error("callback.failed", channel=adapter.name, error=f"{type(exc).__name__}: {exc}"[:300])

    links = links_app(lambda token: signer.verify(token), decisions.on_link, decisions.describe,
                      on_refused=decisions.link_refused)
    routes = [Route("/callbacks/{channel}", callback, methods=["GET", "POST"]), *links.routes, *ops_routes(ready)]
    return Starlette(routes=routes, lifespan=lifespan)


def _refusal(exc: CallbackRefused) -> tuple[bytes, int, dict[str, str]]:
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    return body, exc.status, {"content-type": "application/json"}
