"""Simulator settings: one mutable object per app instance, so the admin hook can change them."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

# Dify's HTTP Request node server maxima (HTTP_REQUEST_MAX_*_TIMEOUT), used when a node says 0/null.
HTTP_MAX_CONNECT_TIMEOUT_S = 10.0
HTTP_MAX_READ_TIMEOUT_S = 600.0
HTTP_MAX_WRITE_TIMEOUT_S = 600.0
HTTP_NODE_MAX_TEXT_SIZE = 1024 * 1024  # HTTP_REQUEST_NODE_MAX_TEXT_SIZE
DIFY_VERSION = "1.14.1"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass
class SimConfig:
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
    request_log_limit: int = 100_000

    def update(self, values: dict) -> None:
        for key in ("max_execution_time_s", "ping_interval_s", "sse_idle_close_s", "human_input_check_interval_s",
                    "human_input_global_timeout_s"):
            if values.get(key) is not None:
                setattr(self, key, float(values[key]))

    def as_dict(self) -> dict:
        return asdict(self)
