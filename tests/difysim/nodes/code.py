"""Dify's Code node (`type: code`, python3): `main(**variables)` returns a dict of the declared outputs.

Real Dify runs it in its sandbox service; the simulator runs it in-process, because the graphs it
executes are our own test and demo graphs (with `--no-sandbox` it fails like a Dify without one).
The demo uses it to read the checkpoint's JSON answer.
"""
from __future__ import annotations

from ..variables import MISSING
from .base import NodeContext, NodeResult, failure
from .sandbox import SANDBOX_UNREACHABLE, sandbox_missing

TYPES = {"string": str, "number": (int, float), "object": dict, "boolean": bool}


async def run_code(ctx: NodeContext) -> NodeResult:
    if (ctx.data.get("code_language") or "python3") != "python3":
        return failure("only python3 code runs in the simulator", "CodeNodeError")
    inputs = {}
    for item in ctx.data.get("variables") or []:
        value = ctx.pool.get(item.get("value_selector") or [])
        inputs[item.get("variable")] = None if value is MISSING else value
    if sandbox_missing(ctx):
        return failure(SANDBOX_UNREACHABLE, "CodeExecutionError", inputs=inputs)
    namespace: dict = {}
    try:
        exec(compile(ctx.data.get("code") or "", f"<code node {ctx.node_id}>", "exec"), namespace)
        result = namespace["main"](**inputs)
    except Exception as exc:  # the sandbox reports any exception as the node's error
        return failure(f"{type(exc).__name__}: {exc}", "CodeNodeError", inputs=inputs)
    if not isinstance(result, dict):
        return failure("Output must be a dict", "OutputValidationError", inputs=inputs)
    outputs = {}
    for name, spec in (ctx.data.get("outputs") or {}).items():
        if name not in result:
            return failure(f"Output {name} is missing.", "OutputValidationError", inputs=inputs)
        expected = TYPES.get((spec or {}).get("type", ""))
        if expected and result[name] is not None and not isinstance(result[name], expected):
            return failure(f"Output variable `{name}` must be a {spec['type']}", "OutputValidationError", inputs=inputs)
        outputs[name] = result[name]
    return NodeResult(inputs=inputs, outputs=outputs)
