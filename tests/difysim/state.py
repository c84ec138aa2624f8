"""Everything one simulator instance owns: apps/runs, settings, the shared HTTP client, faults, logs."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import httpx

from .config import SimConfig
from .engine import Engine
from .runs import Run, Store


@dataclass
class Faults:
    """Admin switches that break the service API for fault tests (not a Dify feature)."""
    outage: bool = False  # every /v1 call answers 502 (like a proxy in front of a dead Dify)
    status: int | None = None  # every /v1 call answers this error status (429, 500, 503)
    latency_s: float = 0.0  # every /v1 call is delayed this long first

    def as_dict(self) -> dict:
        return {"outage": self.outage, "status": self.status, "latency_s": self.latency_s}


class SimState:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.store = Store()
        self.faults = Faults()
        self.requests: deque[dict] = deque(maxlen=self.config.request_log_limit)
        self.http: httpx.AsyncClient | None = None
        self.tasks: set[asyncio.Task] = set()  # strong references: runs outlive their HTTP requests

    async def startup(self) -> None:
        # One pooled client for every HTTP node; no connection cap, since hundreds of runs may each hold
        # a call open for minutes. No proxies from the environment: Dify without an SSRF proxy.
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
                                      trust_env=False, follow_redirects=True)

    async def shutdown(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()

    def start_run(self, run: Run) -> None:
        """Execute the run in the background and arm the maximum-execution-time stop."""
        self.store.add_run(run)
        assert self.http is not None, "SimState.startup() was not called"
        task = asyncio.create_task(Engine(run, self.http, self.config).execute(), name=f"run-{run.id}")
        run.task = task
        self.tasks.add(task)
        timer = asyncio.get_running_loop().call_later(self.config.max_execution_time_s, run.expire)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            timer.cancel()

        task.add_done_callback(done)

    def log_request(self, method: str, path: str, status: int, started: float) -> None:
        self.requests.append({"method": method, "path": path, "status": status, "time": started,
                              "duration_s": round(time.time() - started, 6)})
