"""A small HTTP server for fake platforms: Starlette + uvicorn on a free loopback port, in a thread.

Every request is recorded. A test can make the next calls fail (`fail_next(status, headers, body)`)
or hang (`hang_next()`), to see that adapters turn those into ChannelError and time out.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[Request, "Recorded"], Awaitable[Response]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang_s: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServer:
    """Subclasses list their routes in `routes()`: (method, path, handler)."""

    doc: str = ""  # the documentation page the fake follows

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._failures: list[Failure] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def routes(self) -> list[tuple[str, str, Handler]]:
        raise NotImplementedError

    # ---------------------------------------------------------------- failure injection
    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: Any = None, times: int = 1) -> None:
        self._failures.extend(Failure(status, headers or {}, body) for _ in range(times))

    def hang_next(self, seconds: float = 5.0) -> None:
        self._failures.append(Failure(0, hang_s=seconds))

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # ---------------------------------------------------------------- serving
    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            rec = Recorded(request.method, request.url.path, dict(request.query_params),
                           {k.lower(): v for k, v in request.headers.items()}, await request.body())
            self.requests.append(rec)
            if self._failures:
                failure = self._failures.pop(0)
                if failure.hang_s:
                    await asyncio.sleep(failure.hang_s)
                    return Response(status_code=504)
                if isinstance(failure.body, (dict, list)):
                    return JSONResponse(failure.body, failure.status, headers=failure.headers)
                return Response(failure.body or b"", failure.status, headers=failure.headers)
            return await handler(request, rec)

        return endpoint

    def app(self) -> Starlette:
        return Starlette(routes=[Route(path, self._wrap(handler), methods=[method])
                                 for method, path, handler in self.routes()])

    def start(self) -> None:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"fake-{type(self).__name__}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @contextmanager
    def running(self) -> Iterator[FakeServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status, headers=headers)
