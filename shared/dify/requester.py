"""One app's HTTP door to Dify: auth, client-side limits, timeouts, retries, metrics, error mapping.

Only idempotent GETs are retried. A POST run/stop/form submit is never repeated automatically: a
run keeps executing after the client disconnects (DIFY.md), so a repeat could start it twice."""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from shared.logs import get_logger

from . import metrics
from .errors import DifyError, DifyRateLimited, DifyServerError, DifyUnavailable, error_from_response
from .ratelimit import AppLimiter

log = get_logger("shared.dify")
T = TypeVar("T")
RETRYABLE = (DifyUnavailable, DifyServerError, DifyRateLimited)
# A Retry-After longer than this is not slept through inside one call: the caller gets the error.
MAX_RETRY_AFTER_S = 60.0


class Requester:
    def __init__(self, app: str, base_url: str, api_key: str, *, limiter: AppLimiter, timeout_s: float,
                 retries: int, backoff_base_s: float, backoff_cap_s: float,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.app, self.limiter, self.timeout_s, self.retries = app, limiter, timeout_s, retries
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_s,
                                      headers={"Authorization": f"Bearer {api_key}"})
        # Injectable so tests can record the backoff without waiting for it.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.random: Callable[[], float] = random.random

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------ plain JSON calls
    async def call(self, method: str, path: str, endpoint: str, *, params: dict | None = None,
                   json: Any = None, idempotent: bool, http_timeout: httpx.Timeout | float | None = None,
                   lane: str | None = None) -> Any:
        """The decoded JSON answer of one call (retried when `idempotent`), or a DifyError. `lane`:
        see AppLimiter (the poller's one-by-one polls are `direct`). `http_timeout`: httpx's timeouts for this
        one request (the client's by default), not a deadline on the retries."""
        return await self.with_retries(endpoint, idempotent,
                                       lambda: self._once(method, path, endpoint, params, json, http_timeout, lane))

    async def _once(self, method: str, path: str, endpoint: str, params: dict | None, json: Any,
                    http_timeout: httpx.Timeout | float | None, lane: str | None = None) -> Any:
        await self.limiter.lane(lane)
        async with self.limiter:
            timeout = http_timeout if http_timeout is not None else self.timeout_s
            response = await self._send(endpoint, self.http.build_request(method, path, params=params, json=json,
                                                                          timeout=timeout))
        if not response.is_success:
            raise error_from_response(response.status_code, response.headers, response.content, endpoint)
        try:
            return response.json()
        except ValueError:
            # 2xx but not JSON: a captive portal or proxy page, not Dify.
            raise DifyUnavailable(response.status_code, "invalid_response",
                                  f"{endpoint}: answer is not JSON ({response.headers.get('content-type')})",
                                  endpoint=endpoint, body=response.text[:200]) from None

    # ------------------------------------------------------------------ streams
    async def open_stream(self, method: str, path: str, endpoint: str, *, params: dict | None = None,
                          json: Any = None, idempotent: bool) -> httpx.Response:
        """A 200 `text/event-stream` response whose body is still to be read (caller closes it)."""
        return await self.with_retries(endpoint, idempotent,
                                       lambda: self._open_stream_once(method, path, endpoint, params, json))

    async def _open_stream_once(self, method: str, path: str, endpoint: str, params: dict | None,
                                json: Any) -> httpx.Response:
        # No read timeout on the body: a held node sends only pings for minutes; DifyStream bounds
        # the gaps itself. The headers must come within timeout_s.
        timeout = httpx.Timeout(self.timeout_s, read=None)
        async with self.limiter:
            request = self.http.build_request(method, path, params=params, json=json, timeout=timeout)
            response = await self._send(endpoint, request, stream=True)
        if not response.is_success:
            body = await _read_quietly(response)
            raise error_from_response(response.status_code, response.headers, body, endpoint)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            body = await _read_quietly(response)
            raise DifyUnavailable(response.status_code, "invalid_response",
                                  f"{endpoint}: expected an event stream, got "
                                  f"{response.headers.get('content-type')!r}", endpoint=endpoint,
                                  body=body[:200].decode(errors="replace"))
        return response

    # ------------------------------------------------------------------ shared
    async def _send(self, endpoint: str, request: httpx.Request, stream: bool = False) -> httpx.Response:
        started = time.monotonic()
        status = "error"
        try:
            send = self.http.send(request, stream=stream)
            # With read=None (streams) httpx alone would wait forever for the headers.
            response = await (asyncio.wait_for(send, self.timeout_s) if stream else send)
            status = str(response.status_code)
            return response
        except (TimeoutError, httpx.TimeoutException):
            status = "timeout"
            raise DifyUnavailable(None, "timeout", f"{endpoint}: no answer from Dify in time",
                                  endpoint=endpoint) from None
        except httpx.HTTPError as exc:
            raise DifyUnavailable(None, "connection_error", f"{endpoint}: {type(exc).__name__}: {exc}",
                                  endpoint=endpoint) from None
        finally:
            metrics.calls.labels(app=self.app, endpoint=endpoint, status=status).inc()
            metrics.latency.labels(app=self.app, endpoint=endpoint).observe(time.monotonic() - started)

    async def with_retries(self, endpoint: str, idempotent: bool, attempt_once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except RETRYABLE as exc:
                if not idempotent or attempt >= self.retries:
                    raise
                delay = self.backoff_s(attempt, exc)
                if delay is None:
                    raise
                attempt += 1
                log.warning("dify.call.retry", app=self.app, endpoint=endpoint, attempt=attempt,
                            status=exc.status, code=exc.code, delay_s=round(delay, 3))
                await self.sleep(delay)

    def backoff_s(self, attempt: int, exc: DifyError) -> float | None:
        """Full jitter (uniform in [0, min(cap, base·2^attempt)]); a 429's Retry-After wins."""
        if isinstance(exc, DifyRateLimited) and exc.retry_after_s is not None:
            return exc.retry_after_s if exc.retry_after_s <= MAX_RETRY_AFTER_S else None
        return self.random() * min(self.backoff_cap_s, self.backoff_base_s * (2 ** attempt))


async def _read_quietly(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError:
        return b""
    finally:
        await response.aclose()
