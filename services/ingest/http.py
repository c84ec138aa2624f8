"""HTTP edge helpers: the error shape, body reading with a size and a time limit, JSON that every
consumer can read and every store can hold (shared/limits.py), bearer auth."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from shared import metrics
from shared.limits import Unstorable, check_json
from shared.settings import AppConfig, ReviewerConfig, Settings
from shared.store.errors import StoreUnavailable
from shared.views import valid_id

T = TypeVar("T")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hitl"'}


class ApiError(Exception):
    """Answered as `{"error": {"code", "message", ...extra}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(exc: ApiError) -> JSONResponse:
    metrics.http_errors.labels(exc.code).inc()
    return JSONResponse({"error": {"code": exc.code, "message": exc.message, **exc.extra}},
                        status_code=exc.status, headers=exc.headers)


def compact_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, keys in the order given: Dify workflows route on `"action":"approve"` text."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    return parse_json_object(await read_body(request, limit))


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it is over `limit` (never read whole first) and with 408
    when it takes longer than `timeout_s` to arrive (a slow sender holds a socket and memory)."""
    check_declared_length(request.headers.get("content-length"), limit)
    timeout_s = timeout_s or request.app.state.settings.body_read_timeout_s
    return await read_chunks(request.stream(), limit, timeout_s)


async def read_chunks(chunks: AsyncIterator[bytes], limit: int, timeout_s: float) -> bytes:
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise body_too_large(limit)
                parts.append(chunk)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"the body did not arrive within {timeout_s:.0f}s") from None
    return b"".join(parts)


def check_declared_length(declared: str | None, limit: int) -> None:
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes is over the limit of {limit} bytes")


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"body is over the limit of {limit} bytes")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the ApiError that says what is wrong with it."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    # Dify's template repair can turn a whole body into one JSON string: look inside it once.
    if isinstance(data, str):
        try:
            inner = json.loads(data)
        except (ValueError, RecursionError):
            inner = None
        if isinstance(inner, dict):
            data = inner
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", f"the body must be a JSON object, not {type(data).__name__}")
    try:
        check_json(data)
    except Unstorable as exc:  # the same limits every consumer and store has
        raise ApiError(400, "invalid_json", f"the body cannot be stored: it {exc}") from None
    return data


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, "invalid_field", f"{field}: {err['msg']}", field=field) from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None


def bearer(request: Request) -> str:
    return bearer_token(request.headers.get("authorization", ""))


def bearer_token(header: str) -> str:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", headers=CHALLENGE)
    return token.strip()


def app_auth(request: Request, settings: Settings) -> AppConfig:
    return app_for_header(request.headers.get("authorization", ""), settings)


def app_for_header(authorization: str, settings: Settings) -> AppConfig:
    app = settings.app_for_token(bearer_token(authorization))
    if app is None:
        raise ApiError(401, "unauthorized", "unknown checkpoint token", headers=CHALLENGE)
    return app


def reviewer_auth(request: Request, settings: Settings) -> ReviewerConfig:
    reviewer = settings.reviewer_for_token(bearer(request))
    if reviewer is None:
        raise ApiError(401, "unauthorized", "unknown reviewer token", headers=CHALLENGE)
    return reviewer


async def read_store(request: Request, fn: Callable[[Connection], T]) -> T:
    """Run a read off the event loop; a store that does not answer is a 503, not a 500."""
    def run() -> T:
        with request.app.state.db.read() as conn:
            return fn(conn)
    try:
        return await asyncio.to_thread(run)
    except StoreUnavailable:
        raise ApiError(503, "store_unavailable", "the store is not reachable right now; retry",
                       headers={"Retry-After": "2"}) from None


MAX_OFFSET = 1_000_000_000


def check_id(value: str) -> None:
    """A path id is a short run of id characters: anything else names nothing (404), never a query."""
    if not valid_id(value):
        raise ApiError(404, "not_found", "no such id")


def page_bounds(limit: int, offset: int) -> None:
    if not 1 <= limit <= 500:
        raise ApiError(400, "invalid_field", "limit: 1..500", field="limit")
    if not 0 <= offset <= MAX_OFFSET:
        raise ApiError(400, "invalid_field", f"offset: 0..{MAX_OFFSET}", field="offset")


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """The request-body schema of a route for the OpenAPI document (`openapi_extra`). Our routes read
    their bodies themselves (size and time limits, one JSON rule for every consumer), so FastAPI does
    not see a body parameter; this says what the body is, for clients and for the fuzzers."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "x-hitl-schemas": defs}


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date header's value (RFC 9110 asks an origin server for one), formatted once per second:
    it has a resolution of one second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]
