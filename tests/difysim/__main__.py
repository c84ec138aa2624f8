"""python -m tests.difysim [--host 127.0.0.1] [--port 5001] [--dify-version 1.14|1.17] [--no-sandbox]
[--max-execution-time 1200] [--ping-interval 10] [--stop-delay 1] [--human-input-check-interval 60]
[--human-input-global-timeout 604800] [--console-token difysim-console]  (see tests/difysim/README.md)"""
from __future__ import annotations

import argparse
import os

import uvicorn

from .app import create_app
from .config import SimConfig
from .versions import VERSIONS


def main() -> None:
    defaults = SimConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.difysim", description="Dify service-API simulator")
    parser.add_argument("--host", default=os.environ.get("DIFYSIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DIFYSIM_PORT", "5001")))
    parser.add_argument("--dify-version", choices=sorted(VERSIONS), default=defaults.dify_version,
                        help="the Dify to play: 1.14 (recorded, default) or 1.17 (DIFY.md 'Newer Dify'; "
                             "env DIFYSIM_DIFY_VERSION)")
    parser.add_argument("--no-sandbox", action="store_true", default=defaults.no_sandbox,
                        help="no code sandbox: Code and Template Transform nodes fail like Dify's "
                             "(env DIFYSIM_NO_SANDBOX=1)")
    parser.add_argument("--stop-delay", type=float, default=defaults.stop_delay_s,
                        help="seconds between a stop call and the stream's workflow_finished stopped "
                             "(env DIFYSIM_STOP_DELAY_S)")
    parser.add_argument("--console-token", default=defaults.console_token,
                        help="bearer token of the console API (env DIFYSIM_CONSOLE_TOKEN)")
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
    config = SimConfig(dify_version=args.dify_version, max_execution_time_s=args.max_execution_time,
                       ping_interval_s=args.ping_interval, stop_delay_s=args.stop_delay, no_sandbox=args.no_sandbox,
                       console_token=args.console_token, human_input_check_interval_s=args.human_input_check_interval,
                       human_input_global_timeout_s=args.human_input_global_timeout)
    # Many runs may hold an HTTP call for minutes: no concurrency limit, generous keep-alive.
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level,
                timeout_keep_alive=30, backlog=2048)


if __name__ == "__main__":
    main()
