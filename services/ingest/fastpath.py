"""The checkpoint call served as plain ASGI, in front of FastAPI's routing.

Dify's checkpoint call is the one request ingest serves by the thousand and holds for minutes. Through
FastAPI's routing it costs a dozen stacked coroutine frames, several AsyncExitStacks and a Request
object for the whole hold, and most of ingest's CPU per call; served here it costs one frame, the
socket, and the serialized request (services.ingest.checkpoints.Held). Same function, same answers:
every other path, and every other method on these paths, goes on to FastAPI.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from services.ingest.checkpoints import serve_checkpoint_call
from services.ingest.http import ApiError, app_for_header, check_declared_length, error_response, read_chunks
from shared.logs import get_logger

log = get_logger(__name__)

PATHS = frozenset({"/v1/checkpoints", "/api/user-confirmation"})


def is_checkpoint_call(scope) -> bool:
    return scope["method"] == "POST" and scope["path"] in PATHS


class CheckpointFastPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not is_checkpoint_call(scope):
            return await self.app(scope, receive, send)
        state = scope["app"].state
        headers = _headers(scope)
        try:
            # Who calls is checked before the body is read: an unknown caller costs no memory.
            app = app_for_header(headers.get("authorization", ""), state.settings)
            check_declared_length(headers.get("content-length"), state.settings.body_limit_bytes)
            raw = await read_chunks(_body(receive), state.settings.body_limit_bytes, state.settings.body_read_timeout_s)
            response = await serve_checkpoint_call(state, app, raw)
        except _Disconnected:
            return  # the caller went away before sending the whole body: nobody to answer
        except ApiError as exc:
            response = error_response(exc)
        except Exception as exc:  # the same answer as the app's handler for unexpected errors
            log.error("http.unexpected_error", error=f"{type(exc).__name__}: {exc}")
            response = error_response(ApiError(500, "internal_error", "unexpected error; it has been logged"))
        await _send(response, send)


def _headers(scope) -> dict[str, str]:
    wanted = {b"authorization", b"content-length"}
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k.lower() in wanted}


class _Disconnected(Exception):
    pass


async def _body(receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _send(response: Response, send) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
