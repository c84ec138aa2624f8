"""Dify service-API answers as pydantic models (DIFY.md, fixtures 01, 08, 10, 12).

Every model keeps unknown fields (`extra="allow"`): Dify adds fields between versions and a
gateway may need them. Status values stay plain strings — an unknown status is recorded, never
rejected.
"""
from __future__ import annotations

import json
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import form_inputs

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
# Events that carry streamed text and no state: never recorded (they can be large).
CHUNK_EVENTS = frozenset({"text_chunk", "reasoning_chunk"})
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


class FormInput(DifyModel):
    """One input of a Human Input form. 1.13/1.14: `text_input`, `paragraph`; 1.15+ also `select`
    (`options`, or an `option_source` of constants) and `file` / `file-list` (allowed types,
    extensions and upload methods, `max_length`). Any other type parses too: it is one we do not
    know (shared/dify/form_inputs.py refuses to decide it)."""

    type: str
    output_variable_name: str | None = None
    default: dict[str, Any] | None = None
    options: list[Any] = Field(default_factory=list)
    option_source: dict[str, Any] | None = None
    allowed_file_types: list[str] | None = None
    allowed_file_extensions: list[str] | None = None
    allowed_file_upload_methods: list[str] | None = None
    max_length: int | None = None

    @property
    def choices(self) -> list[str]:
        return form_inputs.options_of(self.model_dump())

    @property
    def known(self) -> bool:
        return self.type in form_inputs.KNOWN_TYPES


def parse_form_inputs(items: list[dict[str, Any]]) -> list[FormInput]:
    """The inputs of a form as typed models; an entry without a type is skipped, never fatal."""
    return [FormInput.model_validate(i) for i in items if isinstance(i, dict) and isinstance(i.get("type"), str)]


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

    @property
    def form_inputs(self) -> list[FormInput]:
        return parse_form_inputs(self.inputs)


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

    @property
    def is_chunk(self) -> bool:
        """Streamed text with no state in it: `text_chunk`, and 1.15+'s `reasoning_chunk` (model
        reasoning, `{reasoning, node_id, is_final}`)."""
        return self.event in CHUNK_EVENTS

    @property
    def submitted_data(self) -> dict[str, Any] | None:
        """1.15+: the values a `human_input_form_filled` was submitted with (absent in 1.14)."""
        value = self.data.get("submitted_data") if self.event == "human_input_form_filled" else None
        return value if isinstance(value, dict) else None

    @property
    def container(self) -> dict[str, Any]:
        """Where a node event ran: its Loop / Iteration and the round / item index (Human Input
        works inside both from 1.16)."""
        meta = self.data.get("execution_metadata") or {}
        return {"loop_id": self.data.get("loop_id"), "loop_index": meta.get("loop_index"),
                "iteration_id": self.data.get("iteration_id"), "iteration_index": meta.get("iteration_index")}


class HumanInputForm(DifyModel):
    """GET /v1/form/human_input/{form_token}."""

    form_content: str | None = None
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    resolved_default_values: dict[str, Any] = Field(default_factory=dict)
    user_actions: list[dict[str, Any]] = Field(default_factory=list)
    expiration_time: Timestamp | None = None

    @property
    def form_inputs(self) -> list[FormInput]:
        return parse_form_inputs(self.inputs)


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
