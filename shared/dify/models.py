"""Dify service-API answers as pydantic models (DIFY.md, fixtures 01, 08, 10, 12).

Every model keeps unknown fields (`extra="allow"`): Dify adds fields between versions and a
gateway may need them. Status values stay plain strings — an unknown status is recorded, never
rejected.
"""
from __future__ import annotations

import json
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
# Statuses Dify's logs endpoint accepts as a filter; any other value answers 400 (fixture 10).
LOG_FILTER_STATUSES = frozenset({"succeeded", "failed", "stopped"})

Timestamp = int | float  # Unix seconds; Dify sends ints, the simulator may send floats


def is_terminal(status: str | None) -> bool:
    """True for a run that will not change any more. `paused` and unknown values are not terminal."""
    return status in TERMINAL_STATUSES


class DifyModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RunRecord(DifyModel):
    """GET /v1/workflows/run/{id}. Note: a stopped run's record may say `running` forever."""

    id: str
    workflow_id: str | None = None
    status: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    total_steps: int | None = 0
    total_tokens: int | None = 0
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    elapsed_time: float | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_from_json_string(cls, value: Any) -> Any:
        # Dify sends `inputs` as a JSON-encoded string here (an object everywhere else).
        if value is None:
            return {}
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError:
                return {"__unparsed__": value if isinstance(value, str) else value.decode(errors="replace")}
        return value if isinstance(value, dict) else {"__unparsed__": value}

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_from_json_string(cls, value: Any) -> Any:
        # 1.14.1 sends an object; older servers sent a JSON string, like `inputs`.
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                return {"__unparsed__": value}
        return value if value is None or isinstance(value, dict) else {"__unparsed__": value}

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    def user_inputs(self) -> dict[str, Any]:
        """The inputs the caller sent, without Dify's `sys.*` keys."""
        return {k: v for k, v in self.inputs.items() if not k.startswith("sys.")}


class PauseReason(DifyModel):
    """One entry of a paused run's `reasons` (Human Input node, fixture 08)."""

    type: str | None = Field(default=None, alias="TYPE")
    form_id: str | None = None
    form_content: str | None = None
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    node_id: str | None = None
    node_title: str | None = None
    resolved_default_values: dict[str, Any] = Field(default_factory=dict)
    form_token: str | None = None
    expiration_time: Timestamp | None = None


class BlockingRunData(DifyModel):
    id: str
    workflow_id: str | None = None
    status: str
    outputs: dict[str, Any] | None = None
    error: str | None = None
    elapsed_time: float | None = None
    total_tokens: int | None = 0
    total_steps: int | None = 0
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    # Only when status is "paused" (a Human Input node waits).
    paused_nodes: list[str] = Field(default_factory=list)
    reasons: list[PauseReason] = Field(default_factory=list)


class BlockingRunResponse(DifyModel):
    """POST /v1/workflows/run, blocking. HTTP 200 even when the run failed: read `data.status`."""

    task_id: str
    workflow_run_id: str
    data: BlockingRunData

    @property
    def status(self) -> str:
        return self.data.status

    @property
    def is_paused(self) -> bool:
        return self.data.status == "paused"


class LogWorkflowRun(DifyModel):
    id: str
    version: str | None = None
    status: str
    triggered_from: str | None = None
    error: str | None = None
    elapsed_time: float | None = None
    total_tokens: int | None = 0
    total_steps: int | None = 0
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    exceptions_count: int | None = 0


class LogEndUser(DifyModel):
    id: str | None = None
    type: str | None = None
    is_anonymous: bool | None = None
    session_id: str | None = None  # the `user` string the run was started with


class LogEntry(DifyModel):
    id: str
    workflow_run: LogWorkflowRun
    created_from: str | None = None
    created_by_role: str | None = None
    created_by_account: dict[str, Any] | None = None
    created_by_end_user: LogEndUser | None = None
    created_at: Timestamp | None = None


class LogPage(DifyModel):
    """GET /v1/workflows/logs: newest first; a row exists from the moment a run starts."""

    page: int
    limit: int
    total: int
    has_more: bool
    data: list[LogEntry] = Field(default_factory=list)


class StreamEvent(DifyModel):
    """One SSE event. `event: ping` becomes StreamEvent(event="ping"). An `error` event has no
    `data` but `code`, `message`, `status` at the top level."""

    event: str
    workflow_run_id: str | None = None
    task_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    status: int | str | None = None
    raw: bytes | None = Field(default=None, exclude=True, repr=False)  # the SSE block as received

    @property
    def is_ping(self) -> bool:
        return self.event == "ping"

    @property
    def run_status(self) -> str | None:
        """`data.status` of workflow_finished / workflow_paused (None for other events)."""
        return self.data.get("status") if self.event in ("workflow_finished", "workflow_paused") else None


class HumanInputForm(DifyModel):
    """GET /v1/form/human_input/{form_token}."""

    form_content: str | None = None
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    resolved_default_values: dict[str, Any] = Field(default_factory=dict)
    user_actions: list[dict[str, Any]] = Field(default_factory=list)
    expiration_time: Timestamp | None = None


class InputSpec(TypedDict):
    type: str
    required: bool
    max_length: int | None
    options: list[str]
    default: Any


class Parameters(DifyModel):
    """GET /v1/parameters; `user_input_form` is `[{"<type>": {variable, label, required, …}}]`."""

    user_input_form: list[dict[str, Any]] = Field(default_factory=list)

    def input_specs(self) -> dict[str, InputSpec]:
        specs: dict[str, InputSpec] = {}
        for item in self.user_input_form:
            if not isinstance(item, dict):
                continue
            for kind, spec in item.items():
                if not isinstance(spec, dict) or not spec.get("variable"):
                    continue
                max_length = spec.get("max_length")
                specs[spec["variable"]] = InputSpec(
                    type=kind, required=bool(spec.get("required")),
                    max_length=int(max_length) if isinstance(max_length, (int, float)) and max_length > 0 else None,
                    options=list(spec.get("options") or []), default=spec.get("default"))
        return specs
