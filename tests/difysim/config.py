"""Simulator settings: one mutable object per app instance, so the admin hook can change them."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .versions import DEFAULT_VERSION, DifyVersion, dify_version

# Dify's HTTP Request node server maxima (HTTP_REQUEST_MAX_*_TIMEOUT), used when a node says 0/null.
HTTP_MAX_CONNECT_TIMEOUT_S = 10.0
HTTP_MAX_READ_TIMEOUT_S = 600.0
HTTP_MAX_WRITE_TIMEOUT_S = 600.0
HTTP_NODE_MAX_TEXT_SIZE = 1024 * 1024  # HTTP_REQUEST_NODE_MAX_TEXT_SIZE
# Settings /_sim/config may change at run time (the Dify version is fixed at start: graphs are
# checked against it when they are registered).
UPDATABLE_FLOATS = ("max_execution_time_s", "ping_interval_s", "sse_idle_close_s", "human_input_check_interval_s",
                    "human_input_global_timeout_s", "stop_delay_s")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


@dataclass
class SimConfig:
    # "1.14" (recorded, default) or "1.17" (DIFY.md "Newer Dify"); see versions.py.
    dify_version: str = field(default_factory=lambda: os.environ.get("DIFYSIM_DIFY_VERSION") or DEFAULT_VERSION)
    # WORKFLOW_MAX_EXECUTION_TIME: a run still executing after this ends `stopped` (fixture 16).
    max_execution_time_s: float = field(default_factory=lambda: _env_float("DIFYSIM_MAX_EXECUTION_TIME_S", 1200.0))
    # Dify pings every 10 s while a streamed run waits; tests shorten this.
    ping_interval_s: float = field(default_factory=lambda: _env_float("DIFYSIM_PING_INTERVAL_S", 10.0))
    # Dify closes an SSE stream after 300 s without an event.
    sse_idle_close_s: float = field(default_factory=lambda: _env_float("DIFYSIM_SSE_IDLE_CLOSE_S", 300.0))
    # Dify's periodic task (celery beat, every minute) that times out Human Input forms.
    human_input_check_interval_s: float = field(
        default_factory=lambda: _env_float("DIFYSIM_HUMAN_INPUT_CHECK_INTERVAL_S", 60.0))
    # HUMAN_INPUT_GLOBAL_TIMEOUT_SECONDS: a form still waiting this long after it opened stops its run.
    human_input_global_timeout_s: float = field(
        default_factory=lambda: _env_float("DIFYSIM_HUMAN_INPUT_GLOBAL_TIMEOUT_S", 7 * 24 * 3600.0))
    # Seen side by side with real Dify: the stream's `workflow_finished stopped` comes about a second
    # after the stop call (the worker notices the stop flag on its next check), not at once.
    stop_delay_s: float = field(default_factory=lambda: _env_float("DIFYSIM_STOP_DELAY_S", 1.0))
    # Dify without a code sandbox: Code and Template Transform nodes fail (nodes/sandbox.py).
    no_sandbox: bool = field(default_factory=lambda: _env_flag("DIFYSIM_NO_SANDBOX"))
    # The console API's bearer token (a stand-in for Dify's session login; console_auth.py).
    console_token: str = field(default_factory=lambda: os.environ.get("DIFYSIM_CONSOLE_TOKEN") or "difysim-console")
    request_log_limit: int = 100_000

    def __post_init__(self) -> None:
        dify_version(self.dify_version)  # reject an unknown version at start, not at the first request

    @property
    def version(self) -> DifyVersion:
        return dify_version(self.dify_version)

    def update(self, values: dict) -> None:
        for key in UPDATABLE_FLOATS:
            if values.get(key) is not None:
                setattr(self, key, float(values[key]))
        if values.get("no_sandbox") is not None:
            self.no_sandbox = bool(values["no_sandbox"])

    def as_dict(self) -> dict:
        values = {k: v for k, v in asdict(self).items() if k != "console_token"}  # a credential: not echoed
        return {**values, "dify_release": self.version.release}
