"""Node executors by DSL type. Loop is driven by the engine itself (it runs a sub-graph).

To add a node type, write `async def run_x(ctx: NodeContext) -> NodeResult`
and register it here; a node that must wait for a person parks with `ctx.run.add_waiter(...)` and
`await ctx.run.wait(waiter)` (pausing.py).
"""
from __future__ import annotations

from .assigner import run_assigner
from .base import NodeContext, NodeResult, failure
from .code import run_code
from .http_request import run_http_request
from .human_input import run_human_input
from .llm import run_llm
from .simple import run_end, run_if_else, run_start, run_template_transform

EXECUTORS = {
    "start": run_start,
    "end": run_end,
    "if-else": run_if_else,
    "http-request": run_http_request,
    "assigner": run_assigner,
    "template-transform": run_template_transform,
    "code": run_code,
    "human-input": run_human_input,
    "llm": run_llm,
}

__all__ = ["EXECUTORS", "NodeContext", "NodeResult", "failure"]
