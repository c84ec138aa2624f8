"""python -m tests.difysim [--host 127.0.0.1] [--port 5001] [--max-execution-time 1200] [--ping-interval 10]
[--human-input-check-interval 60] [--human-input-global-timeout 604800]"""
from __future__ import annotations

import argparse
import os

import uvicorn

from .app import create_app
from .config import SimConfig


def main() -> None:
    defaults = SimConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.difysim", description="Dify 1.14.1 service-API simulator")
    parser.add_argument("--host", default=os.environ.get("DIFYSIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DIFYSIM_PORT", "5001")))
    parser.add_argument("--max-execution-time", type=float, default=defaults.max_execution_time_s,
                        help="seconds before a run ends 'stopped' (Dify's WORKFLOW_MAX_EXECUTION_TIME; "
                             "env DIFYSIM_MAX_EXECUTION_TIME_S)")
    parser.add_argument("--ping-interval", type=float, default=defaults.ping_interval_s,
                        help="seconds between SSE pings (env DIFYSIM_PING_INTERVAL_S)")
    parser.add_argument("--human-input-check-interval", type=float, default=defaults.human_input_check_interval_s,
                        help="seconds between Human Input timeout checks (Dify's periodic task; "
                             "env DIFYSIM_HUMAN_INPUT_CHECK_INTERVAL_S)")
    parser.add_argument("--human-input-global-timeout", type=float, default=defaults.human_input_global_timeout_s,
                        help="seconds a form may wait before its run is stopped (HUMAN_INPUT_GLOBAL_TIMEOUT_SECONDS; "
                             "env DIFYSIM_HUMAN_INPUT_GLOBAL_TIMEOUT_S)")
    parser.add_argument("--log-level", default=os.environ.get("DIFYSIM_LOG_LEVEL", "warning"))
    args = parser.parse_args()
    config = SimConfig(max_execution_time_s=args.max_execution_time, ping_interval_s=args.ping_interval,
                       human_input_check_interval_s=args.human_input_check_interval,
                       human_input_global_timeout_s=args.human_input_global_timeout)
    # Many runs may hold an HTTP call for minutes: no concurrency limit, generous keep-alive.
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level,
                timeout_keep_alive=30, backlog=2048)


if __name__ == "__main__":
    main()
