"""Everything one simulator instance owns: apps/runs, settings, the shared HTTP client, faults, logs."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from .bulk_schedule import BulkFinisher
from .config import SimConfig
from .engine import Engine
from .forms import FormRegistry
from .runs import Run
from .store import Store
from .uploads import UploadedFile

logger = logging.getLogger(__name__)


@dataclass
class Faults:
    """Admin switches that break the service API for fault tests (not a Dify feature)."""
    outage: bool = False  # every /v1 call answers 502 (like a proxy in front of a dead Dify)
    status: int | None = None  # every /v1 call answers this error status (429, 500, 503)
    latency_s: float = 0.0  # every /v1 call is delayed this long first
    # Known upstream fragility of Human Input resumption (DIFY.md), for our recovery tests:
    resume_lost: bool = False  # a form submit answers 200 {} but the run stays paused forever
    resume_ends_stopped: bool = False  # a form submit answers 200 {} and the run ends `stopped`

    def as_dict(self) -> dict:
        return {"outage": self.outage, "status": self.status, "latency_s": self.latency_s,
                "resume_lost": self.resume_lost, "resume_ends_stopped": self.resume_ends_stopped}


class SimState:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.store = Store()
        self.faults = Faults()
        self.requests: deque[dict] = deque(maxlen=self.config.request_log_limit)
        self.http: httpx.AsyncClient | None = None
        self.tasks: set[asyncio.Task] = set()  # strong references: runs outlive their HTTP requests
        self.forms = FormRegistry()
        self.uploads: dict[str, UploadedFile] = {}  # POST /v1/files/upload, by id
        self.bulk_finisher = BulkFinisher()  # finishes /_sim/apps/{app}/bulk-runs runs on schedule
        self.pending_imports: dict[str, Any] = {}  # console DSL imports awaiting a confirm (console_imports.py)
        self.form_checker: asyncio.Task | None = None

    async def startup(self) -> None:
        # One pooled client for every HTTP node; no connection cap, since hundreds of runs may each hold
        # a call open for minutes. No proxies from the environment: Dify without an SSRF proxy.
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
                                      trust_env=False, follow_redirects=True)
        self.form_checker = asyncio.create_task(self._check_forms_periodically(), name="human-input-timeouts")

    async def shutdown(self) -> None:
        if self.form_checker is not None:
            self.form_checker.cancel()
        await self.bulk_finisher.close()
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
        task = asyncio.create_task(Engine(run, self.http, self.config, self.forms).execute(), name=f"run-{run.id}")
        run.task = task
        self.tasks.add(task)
        run.arm_max_execution_time(self.config.max_execution_time_s)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            run.disarm_max_execution_time()

        task.add_done_callback(done)

    def check_human_input_timeouts(self) -> dict[str, list[str]]:
        """One pass of Dify's periodic Human Input timeout task (also `POST /_sim/human_input/expire`)."""
        return self.forms.check_timeouts(self.config.human_input_global_timeout_s)

    async def _check_forms_periodically(self) -> None:
        # Dify runs the check every minute, so a form outlives its timeout by up to that much. Wake
        # at least every second so that a shorter interval set through /_sim/config applies at once.
        last = time.monotonic()
        while True:
            await asyncio.sleep(max(0.01, min(1.0, self.config.human_input_check_interval_s)))
            if time.monotonic() - last >= self.config.human_input_check_interval_s:
                last = time.monotonic()
                try:
                    self.check_human_input_timeouts()
                except Exception:  # one bad form must not end the periodic task
                    logger.exception("human input timeout check failed")

    def log_request(self, method: str, path: str, status: int, started: float) -> None:
        self.requests.append({"method": method, "path": path, "status": status, "time": started,
                              "duration_s": round(time.time() - started, 6)})
