"""The Human Input node (`human-input`, Dify >= 1.13): pause the run on a form, continue on its decision.

Event order (fixtures 08, 09, 13): node_started, human_input_required, workflow_paused — stream
closes, no node_finished. On resumption: workflow_started (reason "resumption"), node_started again
with the same execution id, then human_input_form_filled or human_input_form_timeout, the End's
text, node_finished. The edge taken is the one whose sourceHandle is the action id, or `__timeout`.
"""
from __future__ import annotations

import time

from .. import events
from ..forms import Decision, FormRegistry
from .base import NodeContext, NodeResult

TIMEOUT_HANDLE = "__timeout"


async def run_human_input(ctx: NodeContext) -> NodeResult:
    forms = ctx.forms if ctx.forms is not None else FormRegistry()  # an engine without a registry: unreachable form
    form = forms.open(ctx.run, ctx.node, ctx.pool)
    ctx.run.publish("human_input_required", form.required_event())
    # The run pauses once nothing else can run, and resumes once all its waiting forms are decided (pausing.py).
    form.waiter = ctx.run.add_waiter(ctx.node_id, form.reason())
    decision = await ctx.run.wait(form.waiter)
    if not isinstance(decision, Decision):
        decision = Decision()  # resumed by something else than a form decision: treat as a timeout
    # The resumed worker runs the node again: one more node_started, one more step (total_steps 4 in 08).
    if not ctx.in_container:
        ctx.run.steps += 1
    ctx.resumed = (int(time.time()), time.monotonic())
    ctx.run.publish("node_started", events.node_started(ctx.execution_id, ctx.node, ctx.resumed[0], ctx.loop_id,
                                                        ctx.iteration_id))
    if decision.timed_out:
        ctx.run.publish("human_input_form_timeout", {"node_id": form.node_id, "node_title": form.node_title,
                                                     "expiration_time": form.expiration_time})
        # Fixture 13: only the two action outputs, both empty; the inputs stay unset (null downstream).
        return NodeResult(inputs={}, outputs={"__action_id": "", "__action_value": ""}, handles=(TIMEOUT_HANDLE,))
    rendered = form.rendered_with(decision.inputs)
    filled = {"node_id": form.node_id, "node_title": form.node_title, "rendered_content": rendered,
              "action_id": decision.action_id, "action_text": decision.action_title}
    if ctx.config.version.form_filled_carries_submitted_data:
        filled["submitted_data"] = decision.submitted  # 1.15+: the values as the submitter sent them
    ctx.run.publish("human_input_form_filled", filled)
    outputs = {**decision.inputs, "__action_id": decision.action_id, "__action_value": decision.action_title,
               "__rendered_content": rendered}
    return NodeResult(inputs=dict(decision.inputs), outputs=outputs, handles=(decision.action_id,))
