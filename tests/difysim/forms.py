"""Human Input forms: what a paused Human Input node offers, and how it may be decided or time out.

A form is opened when the node pauses its run. Its `form_content` has `{{#node.var#}}` filled in at
that moment, while the `{{#$output.<name>#}}` markers stay until the form is submitted (fixture 08).
Its fate is one of: submitted (once — a second submit is 412), timed out by the periodic check
(node timeout: the run resumes down `__timeout`), or expired by the global cap (the run stops).
"""
from __future__ import annotations

import copy
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .form_inputs import FormValues, is_missing, rendered_value
from .pausing import EndWithoutResuming, Waiter
from .templates import render, value_to_text
from .variables import MISSING, VariablePool

if TYPE_CHECKING:
    from .runs import Run

TIMEOUT_UNIT_S = {"hour": 3600, "day": 86400}
DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_UNIT = 36, "hour"  # the editor's default
FORM_TOKEN_LENGTH = 22  # as Dify's tokens in the fixtures
OUTPUT_MARKER = re.compile(r"\{\{#\$output\.([a-zA-Z_][a-zA-Z0-9_]*)#\}\}")
WAITING, SUBMITTED, TIMEOUT, EXPIRED = "waiting", "submitted", "timeout", "expired"


def new_form_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(FORM_TOKEN_LENGTH))


def new_form_id() -> str:
    """A time-ordered UUID (version 7 layout), like Dify's form ids ("01a212df-f221-76eb-…")."""
    millis, rand = int(time.time() * 1000), secrets.randbits(74)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class Decision:
    """How a paused Human Input node is resumed: an action with the form's inputs, or its timeout."""
    action_id: str | None = None  # None: the node timed out
    action_title: str = ""
    inputs: dict = field(default_factory=dict)  # the values the node outputs (files as file objects)
    submitted: dict = field(default_factory=dict)  # the values as submitted (1.15+ `submitted_data`)

    @property
    def timed_out(self) -> bool:
        return self.action_id is None


class Form:
    def __init__(self, run: Run, node: dict, pool: VariablePool) -> None:
        data = node.get("data") or {}
        self.id, self.token = new_form_id(), new_form_token()
        self.run, self.node_id, self.node_title = run, node["id"], data.get("title", "")
        self.raw_content = data.get("form_content") or ""
        self.content = render(self.raw_content, pool)  # variables now, $output markers at submit
        self.inputs: list[dict] = copy.deepcopy(data.get("inputs") or [])
        self.actions: list[dict] = copy.deepcopy(data.get("user_actions") or [])
        self.resolved_default_values = self._resolve_defaults(pool)
        # Only a form delivered to the web app is reachable through the service API's form endpoints.
        self.webapp = any(m.get("type") == "webapp" and m.get("enabled")
                          for m in data.get("delivery_methods") or [] if isinstance(m, dict))
        self.created_at = time.time()
        timeout = data.get("timeout")
        unit_s = TIMEOUT_UNIT_S.get(data.get("timeout_unit") or DEFAULT_TIMEOUT_UNIT, 3600)
        self.expires_at = self.created_at + float(DEFAULT_TIMEOUT if timeout is None else timeout) * unit_s
        self.status = WAITING
        self.waiter: Waiter | None = None  # set by the node as it parks on this form

    def _resolve_defaults(self, pool: VariablePool) -> dict[str, Any]:
        values = {}
        for spec in self.inputs:
            default = spec.get("default")
            if not isinstance(default, dict):
                continue
            if default.get("type") == "variable":
                value = pool.get(default.get("selector") or [])
                values[spec.get("output_variable_name")] = "" if value is MISSING else value
            else:
                values[spec.get("output_variable_name")] = default.get("value")
        return values

    # ---------------------------------------------------------------- what the outside sees
    @property
    def expiration_time(self) -> int:
        return int(self.expires_at)

    @property
    def input_names(self) -> list[str]:
        return [spec.get("output_variable_name") for spec in self.inputs]

    def reason(self, content: str | None = None) -> dict:
        """One entry of `reasons` (blocking answer and workflow_paused; fixture 08)."""
        return {"TYPE": "human_input_required", "form_id": self.id,
                "form_content": self.content if content is None else content, "inputs": self.inputs,
                "actions": self.actions, "node_id": self.node_id, "node_title": self.node_title,
                "resolved_default_values": self.resolved_default_values, "form_token": self.token,
                "expiration_time": self.expiration_time}

    def required_event(self, content: str | None = None) -> dict:
        """The data of `human_input_required` (fixture 09): another key order, plus display_in_ui."""
        return {"form_id": self.id, "node_id": self.node_id, "node_title": self.node_title,
                "form_content": self.content if content is None else content, "inputs": self.inputs,
                "actions": self.actions, "display_in_ui": self.webapp, "form_token": self.token,
                "resolved_default_values": self.resolved_default_values, "expiration_time": self.expiration_time}

    def answer(self) -> dict:
        """GET /v1/form/human_input/{token}."""
        return {"form_content": self.content, "inputs": self.inputs,
                "resolved_default_values": self.resolved_default_values, "user_actions": self.actions,
                "expiration_time": self.expiration_time}

    def rendered_with(self, values: dict) -> str:
        """`__rendered_content`: the content with each `{{#$output.name#}}` replaced by the submitted value."""
        specs = {spec.get("output_variable_name"): spec for spec in self.inputs}

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name not in values:
                return match.group(0)
            shown = rendered_value(specs.get(name) or {}, values[name])
            return value_to_text(values[name]) if shown is None else shown

        return OUTPUT_MARKER.sub(substitute, self.content)

    # ---------------------------------------------------------------- deciding
    def ensure_open(self, now: float | None = None) -> None:
        """412 once submitted (for GET too), or once past its expiry — even before the periodic
        check has resumed the run (fixture 13)."""
        if self.status == SUBMITTED:
            raise ApiError(412, "human_input_form_submitted",
                           f"This form has already been submitted by another user, form_id={self.id}")
        if self.status in (TIMEOUT, EXPIRED) or (now or time.time()) >= self.expires_at:
            raise ApiError(412, "human_input_form_expired", f"This form has expired, form_id={self.id}")

    def decide(self, action_id: Any, inputs: Any, values: FormValues | None = None) -> Decision:
        """Validate a submission (400 `invalid_form_data`) and mark the form submitted."""
        titles = {a.get("id"): a.get("title", "") for a in self.actions}
        if action_id not in titles:
            raise ApiError(400, "invalid_form_data", f"Invalid action: {action_id}")
        inputs = inputs if isinstance(inputs, dict) else {}
        missing = [spec.get("output_variable_name") for spec in self.inputs
                   if is_missing(spec, inputs.get(spec.get("output_variable_name")))]
        if missing:
            raise ApiError(400, "invalid_form_data", f"Missing required inputs: {', '.join(missing)}")
        submitted = {name: inputs[name] for name in self.input_names}
        accepted = {spec.get("output_variable_name"): values.accept(spec, submitted[spec.get("output_variable_name")])
                    for spec in self.inputs} if values is not None else dict(submitted)
        # No await between ensure_open() and here: of two simultaneous submits exactly one wins.
        self.status = SUBMITTED
        return Decision(action_id, titles[action_id], accepted, submitted)


class FormRegistry:
    """Every form of one simulator instance, by token."""

    def __init__(self) -> None:
        self.by_token: dict[str, Form] = {}

    def open(self, run: Run, node: dict, pool: VariablePool) -> Form:
        form = Form(run, node, pool)
        self.by_token[form.token] = form
        return form

    def of_run(self, run: Run) -> list[Form]:
        return [f for f in self.by_token.values() if f.run is run]

    def check_timeouts(self, global_timeout_s: float, now: float | None = None) -> dict[str, list[str]]:
        """Dify's periodic task: a waiting form past the global cap stops its run (record `stopped`,
        nothing streamed); one past its node timeout resumes its run down `__timeout`."""
        now = time.time() if now is None else now
        done: dict[str, list[str]] = {"timed_out": [], "stopped": []}
        for form in list(self.by_token.values()):
            if form.status != WAITING or form.waiter is None:
                continue
            if global_timeout_s > 0 and now >= form.created_at + global_timeout_s:
                form.run.release(form.waiter, EndWithoutResuming(
                    "stopped", f"Human input global timeout at node {form.node_id}", announce=False))
                for other in self.of_run(form.run):  # the run is over: none of its forms can be decided
                    if other.status == WAITING:
                        other.status = EXPIRED
                done["stopped"].append(form.run.id)
            elif now >= form.expires_at:
                form.status = TIMEOUT
                form.run.release(form.waiter, Decision())
                done["timed_out"].append(form.run.id)
        return done
