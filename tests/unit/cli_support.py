"""The `hitl` CLI against the real ingest app and the real decider, in one process: the in-memory
broker, a SQLite store, and the CLI's own code run in a thread (it is synchronous) whose HTTP calls
are answered by the ASGI app on the test's event loop."""
from __future__ import annotations

import asyncio
import io
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from services.cli.client import Api
from services.cli.main import main
from services.decider.service import DeciderService
from services.ingest.app import create_app
from shared.models import CheckpointRequested
from shared.settings import AppConfig, ReviewerConfig
from shared.store import Database
from shared.store import checkpoints as store
from shared.topology import CHECKPOINT_REQUESTED
from tests.conftest import REVIEWERS, make_settings, memory_broker, verifier


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class LoopTransport(httpx.BaseTransport):
    """Requests made in the CLI's thread, answered by the ASGI app on the event loop `loop`."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            answer = await self.client.send(httpx.Request(request.method, request.url, headers=request.headers,
                                                          content=request.read()))
            await answer.aread()
            return answer

        answer = asyncio.run_coroutine_threadsafe(send(), self.loop).result(timeout=60)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


class CliWorld:
    """ingest + decider + store; `await world.hitl("show", "3f2a9c")` runs the CLI as `reviewer`."""

    def __init__(self, sqlite_url: str) -> None:
        self.settings = make_settings(
            sqlite_url, apps=[AppConfig(name="demo", checkpoint_token="cp-demo-token-0001"),
                              AppConfig(name="other", checkpoint_token="cp-other-token-001")],
            reviewers=[*[ReviewerConfig(name=n, token=t, apps=["demo"]) for n, t in REVIEWERS.items()],
                       ReviewerConfig(name="olga", token="rv-olga-token", apps=["other"])],
            decision_reply_timeout_s=5)
        self.db = Database(sqlite_url)
        self.db.migrate()
        self.broker = memory_broker(self.settings)
        self.decider = DeciderService(self.settings, self.db, self.broker, verifier(self.settings))
        self.app = create_app(self.settings, self.db, self.broker, start_broker=False,
                              verifier=verifier(self.settings))
        self.tokens = {**REVIEWERS, "olga": "rv-olga-token"}

    async def start(self) -> None:
        await self.broker.start()
        self.http = httpx.Client(transport=LoopTransport(self.app, asyncio.get_running_loop()))

    async def close(self) -> None:
        self.http.close()
        self.app.state.replies.fail_all()
        await self.broker.close()
        self.db.dispose()

    def api(self, reviewer: str = "alice") -> Api:
        return Api("http://ingest", self.tokens[reviewer], client=self.http)

    async def hitl(self, *argv: str, reviewer: str = "alice", stdin: str | None = None) -> Result:
        return await asyncio.to_thread(run_cli, self.api(reviewer), list(argv), stdin)

    async def call(self, method: str, path: str, reviewer: str = "alice", **params: Any) -> tuple[int, Any]:
        """One API call as `reviewer` (off the loop: the app answering it runs on the loop)."""
        return await asyncio.to_thread(self.api(reviewer).call, method, path, None, params)

    # ------------------------------------------------------------------ state
    def add_checkpoint(self, *, id: str | None = None, app: str = "demo", run_id: str | None = None,
                       node_id: str = "draft", round_: int = 1, node_output: Any = "Draft 1", status: str = "open",
                       **extra: Any) -> dict[str, Any]:
        now = time.time()
        values = dict(id=id or str(uuid.uuid4()), app=app, kind="http", workflow_run_id=run_id or str(uuid.uuid4()),
                      node_id=node_id, round=round_, status=status, mode="hold", message="Check the draft",
                      node_output=node_output, timeout_s=300, deadline=now + 300, on_timeout="abort", assignees=[],
                      max_rounds=5, created_at=now, updated_at=now)
        values.update(extra)
        with self.db.write() as conn:
            row = store.insert_if_absent(conn, values)
        assert row is not None
        return dict(row)

    async def open_round(self, cp: dict[str, Any], round_: int) -> None:
        """The workflow calls the checkpoint again (a revise loop): the decider opens round `round_`."""
        req = CheckpointRequested(app=cp["app"], workflow_run_id=cp["workflow_run_id"], node_id=cp["node_id"],
                                  node_output=f"Draft {round_}", timeout_s=300, max_rounds=5, round=round_)
        await self.broker.publish(self.settings.names.commands, CHECKPOINT_REQUESTED, req.to_bytes(),
                                  message_id=req.id)
        await self.broker.drain()

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = store.get(conn, checkpoint_id)
        assert row is not None
        return dict(row)

    def decisions(self, checkpoint_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(h) for h in store.history_of(conn, checkpoint_id) if h["kind"] == "decision"]


def run_cli(api: Api, argv: list[str], stdin: str | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    import sys

    saved_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main(argv, api=api)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = saved_stdin
    return Result(code, out.getvalue(), err.getvalue())


async def cli_world(sqlite_url: str):
    world = CliWorld(sqlite_url)
    with structlog.testing.capture_logs():  # the services' log lines stay out of the CLI's captured output
        await world.start()
        try:
            yield world
        finally:
            await world.close()
