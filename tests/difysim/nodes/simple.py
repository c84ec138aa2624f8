"""The small nodes: start, end, if-else and template-transform."""
from __future__ import annotations

from jinja2.sandbox import SandboxedEnvironment

from ..conditions import condition_model, evaluate_group
from ..variables import MISSING
from .base import NodeContext, NodeResult, failure
from .sandbox import SANDBOX_UNREACHABLE, sandbox_missing

_JINJA = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
TEMPLATE_TRANSFORM_MAX_OUTPUT = 400_000  # Dify's CODE_MAX_STRING_LENGTH default


async def run_start(ctx: NodeContext) -> NodeResult:
    # The validated user inputs were put in the pool under the start node's id before the run began.
    values = ctx.pool.snapshot(ctx.node_id)
    return NodeResult(inputs=values, outputs=values)


def end_values(ctx: NodeContext) -> list[tuple[str, list, object]]:
    """(output name, selector, value) of an End node; a missing variable is null."""
    rows = []
    for out in ctx.data.get("outputs") or []:
        selector = out.get("value_selector") or []
        value = ctx.pool.get(selector)
        rows.append((out.get("variable"), selector, None if value is MISSING else value))
    return rows


async def run_end(ctx: NodeContext) -> NodeResult:
    values = {name: value for name, _, value in end_values(ctx)}
    return NodeResult(inputs=values, outputs=values)


async def run_if_else(ctx: NodeContext) -> NodeResult:
    cases = ctx.data.get("cases")
    if cases is None:  # the pre-"cases" DSL: one condition group meaning "true"
        cases = [{"case_id": "true", "logical_operator": ctx.data.get("logical_operator", "and"),
                  "conditions": ctx.data.get("conditions") or []}]
    logged, condition_results = [], []
    selected = None
    for case in cases:
        operator = case.get("logical_operator", "and")
        try:
            final, results, evaluated = evaluate_group(case.get("conditions") or [], operator, ctx.pool)
        except ValueError as exc:
            return failure(str(exc), "ValueError")
        logged.extend(evaluated)
        condition_results.append({"group": {"case_id": case.get("case_id"), "logical_operator": operator,
                                            "conditions": [condition_model(c) for c in case.get("conditions") or []]},
                                  "results": results, "final_result": final})
        if final:
            selected = case.get("case_id")
            break
    return NodeResult(inputs={"conditions": logged}, process_data={"condition_results": condition_results},
                      outputs={"result": selected is not None, "selected_case_id": selected or "false"},
                      handles=(selected or "false",))


async def run_template_transform(ctx: NodeContext) -> NodeResult:
    """Dify's Jinja2 node: data.variables maps names to selectors, data.template renders to `output`."""
    variables = {}
    for item in ctx.data.get("variables") or []:
        value = ctx.pool.get(item.get("value_selector") or [])
        variables[item.get("variable")] = None if value is MISSING else value
    if sandbox_missing(ctx):
        return failure(SANDBOX_UNREACHABLE, "", inputs=variables)  # Dify's node sets no error_type here
    try:
        output = _JINJA.from_string(ctx.data.get("template") or "").render(**variables)
    except Exception as exc:  # a template error fails the node, as the sandbox would
        return failure(str(exc), "TemplateTransformNodeError", inputs=variables)
    if len(output) > TEMPLATE_TRANSFORM_MAX_OUTPUT:
        return failure(f"Output length exceeds {TEMPLATE_TRANSFORM_MAX_OUTPUT} characters",
                       "TemplateTransformNodeError", inputs=variables)
    return NodeResult(inputs=variables, outputs={"output": output})
