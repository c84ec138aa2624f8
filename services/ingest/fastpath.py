"""The checkpoint call served as plain ASGI, in front of FastAPI's routing.

Dify's checkpoint call is the one request ingest serves by the thousand and holds for minutes. Through
FastAPI's routing it costs a dozen stacked coroutine frames, several AsyncExitStacks and a Request
object for the whole hold, and most of ingest's CPU per call; served here it costs one frame, the
socket, and the serialized request (services.ingest.checkpoints.Held). Same function, same answers:
every other path, and every other method on these paths, goes on to FastAPI.
"""
from __future__ import annotations

from typing import Any

from starlette.responses import Response

from services.ingest.checkpoints import serve_checkpoint_call
from services.ingest.http import ApiError, body_too_large, check_declared_length, error_response
from shared.logs import get_logger

log = get_logger(__name__)

PATHS = frozenset({"/v1/checkpoints", "/api/user-confirmation"})


class CheckpointFastPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            return await self.app(scope, receive, send)
        state = scope["app"].state
        headers = _headers(scope)
        try:
            raw = await _read_body(receive, headers.get("content-length"), state.settings.body_limit_bytes)
            if raw is None:
                return  # the caller went away before sending the whole body: nobody to answer
            response = await serve_checkpoint_call(state, headers.get("authorization", ""), raw)
        except ApiError as exc:
            response = error_response(exc)
        except Exception as exc:  # the same answer as the app's handler for unexpected errors
            log.error("http.unexpected_error", error=f"{type(exc).__name__}: {exc}")
            response = error_response(ApiError(500, "internal_error", "unexpected error; it has been logged"))
        await _send(response, send)


def _headers(scope) -> dict[str, str]:
    wanted = {b"authorization", b"content-length"}
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k.lower() in wanted}


async def _read_body(receive, declared: str | None, limit: int) -> bytes | None:
    check_declared_length(declared, limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(response: Response, send) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
