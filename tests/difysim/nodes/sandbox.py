"""Dify without a code sandbox (`--no-sandbox`): Code and Template Transform nodes cannot run.

Both reach the sandbox over HTTP (CODE_EXECUTION_ENDPOINT, default http://127.0.0.1:8194 in a
source install). When nothing listens there, Dify's code executor client
(api/core/helper/code_executor/code_executor.py, `CodeExecutor.execute_code`) wraps the connection
error in this text, which becomes the node's `error`: the Code node reports the exception class
(`CodeExecutionError`) as `error_type`, the Template Transform node none.
"""
from __future__ import annotations

from .base import NodeContext

SANDBOX_UNREACHABLE = ("Failed to execute code, which is likely a network issue, please check if the sandbox "
                       "service is running. ( Error: [Errno 111] Connection refused )")


def sandbox_missing(ctx: NodeContext) -> bool:
    return ctx.config.no_sandbox
