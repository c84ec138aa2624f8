"""Message models: every message on the broker is one of these, as JSON.

Each carries `type`, `id` (the idempotency key of the message itself), `occurred_at` and a schema
`version`. Consumers tolerate duplicates: the same `id` applied twice has one effect.
"""
from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.limits import Json, Text
from shared.policy import Policy


def new_id() -> str:
    return str(uuid.uuid4())


class Action(StrEnum):
    approve = "approve"
    revise = "revise"
    edit = "edit"
    abort = "abort"


class OnTimeout(StrEnum):
    abort = "abort"
    approve = "approve"
    default = "default"


class CheckpointStatus(StrEnum):
    open = "open"
    resolved = "resolved"  # a person or bot decided
    expired = "expired"  # the deadline passed and on_timeout was applied
    cancelled = "cancelled"  # the system ended it (e.g. the run ended first)


TERMINAL = {CheckpointStatus.resolved, CheckpointStatus.expired, CheckpointStatus.cancelled}


class EventType(StrEnum):
    """Routing keys of checkpoint events on `hitl.events` (run events are `run.status.<status>` and
    `node.<status>`: Dify's status values, which are open-ended)."""

    opened = "checkpoint.opened"
    resolved = "checkpoint.resolved"
    expired = "checkpoint.expired"
    cancelled = "checkpoint.cancelled"
    delivered = "checkpoint.delivered"
    delivery_failed = "checkpoint.delivery_failed"
    resumed = "checkpoint.resumed"
    resumed_as_stopped = "checkpoint.resumed_as_stopped"
    resume_stuck = "checkpoint.resume_stuck"
    resume_unconfirmed = "checkpoint.resume_unconfirmed"
    voted = "checkpoint.voted"  # a vote of a quorum, with the progress
    reminder = "checkpoint.reminder"
    deadline_near = "checkpoint.deadline_near"
    escalated = "checkpoint.escalated"
    claimed = "checkpoint.claimed"
    released = "checkpoint.released"
    reassigned = "checkpoint.reassigned"
    decision_rejected = "decision.rejected"
    decision_parked = "decision.parked"
    decision_expired = "decision.expired"


# Dify form checkpoints: the form action ids that mean "abort" (one place for the vocabulary).
ABORT_ACTION_IDS = ("abort", "reject", "cancel", "deny", "stop")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    id: str = Field(default_factory=new_id)
    occurred_at: float = Field(default_factory=time.time)
    version: int = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class CheckpointRequested(Message):
    """A Dify HTTP node asked for a decision (ingest → decider)."""

    type: Literal["checkpoint.requested"] = "checkpoint.requested"
    app: Text
    workflow_run_id: Text
    node_id: Text
    round: int | None = None
    node_output: Json = None
    message: Text | None = None
    app_id: Text | None = None
    workflow_id: Text | None = None
    user: Text | None = None
    timeout_s: float
    on_timeout: OnTimeout = OnTimeout.abort
    default_output: Json = None
    assignees: list[Text] = Field(default_factory=list)
    max_rounds: int
    mode: Literal["hold", "detached"] = "hold"
    kind: Literal["http", "dify-form"] = "http"
    form: Json = None  # dify-form: content, inputs, actions, defaults, expiry, node title
    form_token: Text | None = Field(default=None, repr=False)  # dify-form: a secret
    policy: Policy | None = None  # this call's policy fields, over the app's policy


class DecisionSubmitted(Message):
    """A decision from any channel (HTTP API, CLI, console, a bot on `hitl.decisions`)."""

    type: Literal["decision.submitted"] = "decision.submitted"
    checkpoint_id: Text | None = Field(default=None, max_length=64)
    workflow_run_id: Text | None = Field(default=None, max_length=64)
    node_id: Text | None = Field(default=None, max_length=128)
    action: Action
    feedback: Text | None = None
    output: Json = None
    has_output: bool = False  # distinguishes "edit to null" from "no output given"
    actor: Text = Field(min_length=1, max_length=128)
    # The channel the deciding process observed (api, console, slack, …): a bot's own claim is
    # replaced by `bot:<name>` when its signature is checked.
    channel: Text = Field(default="bot", max_length=32)
    client: Text | None = Field(default=None, max_length=32)  # what the caller says it is (e.g. "cli"): not trusted
    # Groups our own process vouches for (the console: an identity provider's claims); ignored from bots.
    actor_groups: list[Text] | None = Field(default=None, max_length=100)
    reason: Text | None = None  # free text, e.g. why aborted
    form_action: Text | None = Field(default=None, max_length=64)  # dify-form: the user action id
    form_inputs: Json = None  # dify-form: input values (defaults fill the rest)
    idempotency_key: Text | None = Field(default=None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _output_given(cls, data: Any) -> Any:
        # A bot's JSON that carries "output" (even null) means "this is the output".
        if isinstance(data, dict) and "output" in data and "has_output" not in data:
            data = {**data, "has_output": True}
        return data


class CheckpointCommand(Message):
    """A change to an open checkpoint that is not a decision (ingest, console → decider): claim it
    (a soft lock others see), release the claim, or reassign it."""

    type: Literal["checkpoint.command"] = "checkpoint.command"
    checkpoint_id: Text = Field(max_length=64)
    command: Literal["claim", "release", "reassign"]
    actor: Text = Field(min_length=1, max_length=128)
    channel: Text = Field(default="api", max_length=32)
    to: Text | None = Field(default=None, max_length=128)  # reassign: a reviewer name or group:<name>
    replace: Text | None = Field(default=None, max_length=128)  # reassign: whose seat (an admin; default: the actor's)
    note: Text | None = Field(default=None, max_length=2000)
    actor_groups: list[Text] | None = Field(default=None, max_length=100)  # as on DecisionSubmitted


class Resolution(BaseModel):
    """What the held Dify call is answered with; also the `resolution` of a resolved checkpoint."""

    action: str
    checkpoint_id: str
    round: int
    output: Any = None
    feedback: str | None = None
    decided_by: str
    reason: Literal["decision", "timeout", "run_ended", "escalation"] = "decision"


class Reply(Message):
    """decider → the ingest that waits (reply_to + correlation_id)."""

    type: Literal["reply"] = "reply"
    outcome: Literal["resolved", "pending", "applied", "rejected", "parked", "voted", "done"]
    checkpoint_id: str | None = None
    progress: dict[str, Any] | None = None  # a vote: the quorum's progress; a command: the checkpoint
    resolution: Resolution | None = None
    error_code: str | None = None
    error_message: str | None = None
    winning: dict[str, Any] | None = None


class CheckpointEvent(Message):
    """Published on `hitl.events` with routing key = `type` for bots and the console."""

    type: str
    checkpoint: dict[str, Any]
    decision: dict[str, Any] | None = None


class DecisionEvent(Message):
    """On `hitl.events`: a decision that is not (yet) about a checkpoint — `decision.parked` (it came
    before its checkpoint) and `decision.expired` (its checkpoint never opened)."""

    type: str
    decision: dict[str, Any]
    apps: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------- run monitoring
class RunTrack(Message):
    """Start (or keep) tracking a Dify run: from a checkpoint, `hitl track`, the gateway, a re-run."""

    type: Literal["run.track"] = "run.track"
    app: Text
    workflow_run_id: Text
    source: Text = "track"
    task_id: Text | None = None
    user: Text | None = None
    parent_run_id: Text | None = None
    overrides: Json = None
    continuation_of: Text | None = None


class RunEvent(Message):
    """One event of a run: a Dify SSE event teed by the gateway or the poller's own stream, or a
    milestone a workflow reported itself through POST /v1/events."""

    type: Literal["run.event"] = "run.event"
    app: Text
    workflow_run_id: Text
    source: Literal["gateway", "api", "poller", "workflow"] = "gateway"
    event: Json  # Dify's event JSON: {"event", "workflow_run_id", "task_id", "data"}
    user: Text | None = None


class StreamsAlive(Message):
    """A process that reads live run streams (ingest's gateway and runs it started, the poller's
    re-attaches) lists them every HITL_STREAM_HEARTBEAT_S: a streamed run missing from every list
    for HITL_STREAM_LOST_AFTER_S lost its reader, and the poller re-attaches to it."""

    type: Literal["run.streams_alive"] = "run.streams_alive"
    streams: list[tuple[Text, Text]] = Field(default_factory=list, max_length=1000)  # (app, workflow_run_id)


class RunEnded(Message):
    """The poller saw a run end failed or stopped: the decider cancels the run's open checkpoints —
    those of the same app only."""

    type: Literal["run.ended"] = "run.ended"
    app: Text
    workflow_run_id: Text
    status: Text


class RunStatusEvent(Message):
    """On `hitl.events`: `run.status.<status>` when a run's status changes, `node.<status>` for
    node executions of streamed runs."""

    type: str
    run: dict[str, Any]
    node: dict[str, Any] | None = None


class FormDelivery(Message):
    """decider → poller: submit a decided Dify form (POST /v1/form/human_input/{token})."""

    type: Literal["form.deliver"] = "form.deliver"
    checkpoint_id: Text
    app: Text
    workflow_run_id: Text
    form_token: Text = Field(repr=False)
    action: Text
    inputs: Json
    user: Text


class FormReport(Message):
    """poller → decider: what became of a form (delivery result, or what the run did)."""

    type: Literal["form.report"] = "form.report"
    app: Text
    workflow_run_id: Text
    checkpoint_id: Text | None = None
    node_id: Text | None = None
    outcome: Literal["delivered", "already_submitted", "expired", "failed", "run_resumed", "form_timeout"]
    run_status: str | None = None
    detail: str | None = None


# ---------------------------------------------------------------------- the notifier
class NotificationJob(Message):
    """notifier → notifier: send or update one platform message (a row of `notifications`). The row
    holds what to do; the job only says which row, and which channel and address it goes to (so a
    platform that is paused or busy can be told apart without reading the store)."""

    type: Literal["notification.deliver"] = "notification.deliver"
    notification_id: Text
    channel: Text
    address_key: Text
