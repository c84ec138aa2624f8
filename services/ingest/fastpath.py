"""The checkpoint call served as plain ASGI, in front of FastAPI's routing.

Dify's checkpoint call is the one request ingest serves by the thousand and holds for minutes. Through
FastAPI's routing it costs a dozen stacked coroutine frames, several AsyncExitStacks and a Request
object for the whole hold, and most of ingest's CPU per call. Served here, a held call keeps two small
frames of ours (serve, checkpoints.hold) and ReplyRouter's, the socket, and the serialized request
(services.ingest.checkpoints.Held). Same function, same answers: every other path, and every other
method on these paths, goes on to FastAPI.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.responses import Response

from services.ingest.checkpoints import Held, admit, hold
from services.ingest.http import (
    ApiError,
    app_for_header,
    check_declared_length,
    error_response,
    http_date,
    read_chunks,
)
from shared.logs import get_logger

log = get_logger(__name__)

PATHS = frozenset({"/v1/checkpoints", "/api/user-confirmation"})


def is_checkpoint_call(scope) -> bool:
    return scope["method"] == "POST" and scope["path"] in PATHS


class CheckpointFastPath:
    """Checkpoint calls to `serve`, everything else to `app`. Not a coroutine function: it returns the
    coroutine it picks, so a held call has no frame of this layer (uvicorn is told "asgi3")."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope, receive, send) -> Awaitable[None]:
        if scope["type"] != "http" or not is_checkpoint_call(scope):
            return self.app(scope, receive, send)
        return serve(scope["app"].state, scope, receive, send)


async def serve(state, scope, receive, send) -> None:
    """One checkpoint call, from its headers to its answer. While held, this frame and hold()'s are
    all of ours: the raw body and the headers went with _admitted's frame."""
    try:
        admitted = await _admitted(state, scope, receive)
    except _Disconnected:
        return  # the caller went away before sending the whole body: nobody to answer
    if isinstance(admitted, Held):
        try:
            admitted = await hold(state, admitted)
        except Exception as exc:
            admitted = _unexpected(exc)
    await _send(admitted, send)


async def _admitted(state, scope, receive) -> Held | Response:
    """The call read and checked, in a frame of its own so that what it read is freed on return."""
    authorization = content_length = ""
    headers = scope["headers"]
    for name, value in headers:
        name = name.lower()
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            content_length = value.decode("latin-1")
    # Nothing reads them again (uvicorn reads them while it parses): emptied, a held call does not keep
    # the list, which the connection's protocol refers to until its next request.
    headers.clear()
    try:
        # Who calls is checked before the body is read: an unknown caller costs no memory.
        app = app_for_header(authorization, state.settings)
        check_declared_length(content_length or None, state.settings.body_limit_bytes)
        raw = await read_chunks(_body(receive), state.settings.body_limit_bytes, state.settings.body_read_timeout_s)
        return await admit(state, app, raw)
    except ApiError as exc:
        return error_response(exc)
    except _Disconnected:
        raise
    except Exception as exc:  # the same answer as the app's handler for unexpected errors
        return _unexpected(exc)


def _unexpected(exc: Exception) -> Response:
    log.error("http.unexpected_error", error=f"{type(exc).__name__}: {exc}")
    return error_response(ApiError(500, "internal_error", "unexpected error; it has been logged"))


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
    # A Date on our answers (RFC 9110 asks an origin server for one), as DateHeader adds on FastAPI's.
    headers = [*response.raw_headers, (b"date", http_date())]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
