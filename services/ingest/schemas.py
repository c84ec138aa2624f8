"""Request bodies of the HTTP API, as Dify and reviewers send them.

Lenient where Dify's templates make values odd (numbers as strings, a comma-separated assignee
list, any JSON value as node_output), strict where a mistake would change the outcome.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.limits import Json, Text
from shared.models import Action, OnTimeout
from shared.policy import Approval, EscalationStep, Policy
from shared.views import ID_PATTERN


class CheckpointCall(BaseModel):
    """POST /v1/checkpoints (and /api/user-confirmation): the body of the checkpoint HTTP node."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    workflow_run_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    node_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    node_output: Json = None
    message: Text | None = Field(default=None, max_length=100_000)
    app_id: Text | None = Field(default=None, max_length=64)
    workflow_id: Text | None = Field(default=None, max_length=64)
    user: Text | None = Field(default=None, max_length=255)
    round: int | None = Field(default=None, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0, le=30 * 24 * 3600)
    on_timeout: OnTimeout = OnTimeout.abort
    default_output: Json = None
    assignees: list[Text] = Field(default_factory=list, max_length=100)
    max_rounds: int | None = Field(default=None, ge=1, le=1000)
    mode: Literal["hold", "detached"] = "hold"
    read_timeout_s: float | None = Field(default=None, gt=0, le=24 * 3600)
    # "text": answer the decision's text alone (the output for approve/edit, the feedback otherwise),
    # for a workflow that uses the answer as is; such a call never opens a checkpoint.
    answer: Literal["decision", "text"] = "decision"
    # Decision policy fields (shared/policy.py), over the app's policy.
    approval: Approval | None = None
    no_self_approval: bool | None = None
    remind_every_s: float | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    warn_before_s: float | None = Field(default=None, gt=0, le=30 * 24 * 3600)
    escalate: list[EscalationStep] | None = Field(default=None, max_length=10)

    def policy(self) -> Policy:
        return Policy(approval=self.approval, no_self_approval=self.no_self_approval,
                      remind_every_s=self.remind_every_s, warn_before_s=self.warn_before_s, escalate=self.escalate)

    @field_validator("message", mode="before")
    @classmethod
    def _message_text(cls, value: Any) -> Any:
        # An object variable in the template renders as JSON: keep it readable rather than refuse it.
        return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    @field_validator("assignees", mode="before")
    @classmethod
    def _assignee_list(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [a.strip() for a in value.split(",") if a.strip()]
        return value

    @field_validator("round", "max_rounds", "timeout_s", "read_timeout_s", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        # An optional loop variable that is not set renders as "" in Dify's template.
        return None if isinstance(value, str) and not value.strip() else value


class DecisionBody(BaseModel):
    """POST /v1/checkpoints/{id}/decision."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    action: Action
    feedback: Text | None = Field(default=None, max_length=100_000)
    output: Json = None
    reason: Text | None = Field(default=None, max_length=10_000)
    actor: Text | None = Field(default=None, max_length=128)
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)
    form_action: Text | None = Field(default=None, min_length=1, max_length=64)  # Dify form: a user action id
    form_inputs: dict[str, Json] | None = None  # Dify form: input values


class NodeConfirmation(BaseModel):
    """POST /api/node-confirmation: the classic satisfied / not-satisfied call."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    workflow_id: str | None = Field(default=None, max_length=64, pattern=ID_PATTERN)
    workflow_run_id: str | None = Field(default=None, max_length=64, pattern=ID_PATTERN)
    node_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    satisfied: bool
    feedback: Text | None = Field(default=None, max_length=100_000)

    @property
    def run_id(self) -> str | None:
        return self.workflow_run_id or self.workflow_id


class ClaimBody(BaseModel):
    """POST /v1/checkpoints/{id}/claim and /release."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: Text | None = Field(default=None, max_length=2000)


class ReassignBody(BaseModel):
    """POST /v1/checkpoints/{id}/reassign: hand a seat (yours, or `replace`'s) to `to`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to: Text = Field(min_length=1, max_length=128)
    replace: Text | None = Field(default=None, max_length=128)
    note: Text | None = Field(default=None, max_length=2000)


class BulkFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: Text | None = Field(default=None, max_length=64)
    node_id: Text | None = Field(default=None, max_length=128)
    run_id: Text | None = Field(default=None, max_length=64)


class BulkDecisionBody(BaseModel):
    """POST /v1/checkpoints/bulk-decision: the same decision for each open checkpoint named by `ids`
    or matched by `filter`; `preview` lists them without deciding."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    ids: list[Text] | None = Field(default=None, max_length=500)
    filter: BulkFilter | None = None
    action: Action
    feedback: Text | None = Field(default=None, max_length=100_000)
    reason: Text | None = Field(default=None, max_length=10_000)
    preview: bool = False
