"""The rows the store returns, typed. A query that may find nothing returns `Row | None`; one that
always finds something returns the row itself (STYLE 13: `Optional` means "may be missing")."""
from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Row


class CheckpointRow(TypedDict):
    id: str
    app: str
    kind: str  # http | dify-form
    workflow_run_id: str
    node_id: str
    round: int
    status: str  # CheckpointStatus
    mode: str  # hold | detached
    message: str | None
    node_output: Any
    app_id: str | None
    workflow_id: str | None
    user: str | None
    timeout_s: float
    deadline: float
    on_timeout: str
    default_output: Any
    assignees: list[str]
    max_rounds: int
    created_at: float
    updated_at: float
    resolved_at: float | None
    action: str | None
    output: Any
    feedback: str | None
    decided_by: str | None
    reason: str | None
    decision_channel: str | None
    reply_to: str | None
    correlation_id: str | None
    attach_count: int
    published: bool
    form: dict[str, Any] | None
    secret: str | None
    delivery: str | None
    delivery_detail: str | None
    delivered_at: float | None
    policy: dict[str, Any] | None
    tally: dict[str, Any] | None
    claimed_by: str | None
    claimed_at: float | None
    head_hash: str | None


class HistoryRow(TypedDict):
    id: int
    checkpoint_id: str
    at: float
    kind: str
    actor: str | None
    channel: str | None
    action: str | None
    outcome: str | None
    code: str | None
    message_id: str | None
    idempotency_key: str | None
    detail: dict[str, Any] | None
    prev_hash: str | None
    hash: str | None


class VoteRow(TypedDict):
    checkpoint_id: str
    voter: str
    action: str
    channel: str | None
    at: float
    message_id: str | None
    feedback: str | None


class TimerRow(TypedDict):
    id: int
    checkpoint_id: str
    kind: str  # reminder | deadline_near | escalate
    step: int
    due_at: float
    fired_at: float | None
    outcome: str | None


class RunRow(TypedDict):
    app: str
    id: str
    status: str
    dify_status: str | None
    stale_record: bool
    source: str
    task_id: str | None
    user: str | None
    workflow_id: str | None
    inputs: Any
    outputs: Any
    error: str | None
    elapsed_time: float | None
    total_steps: int | None
    exceptions_count: int | None
    created_at: float | None
    finished_at: float | None
    parent_run_id: str | None
    overrides: dict[str, Any] | None
    continuation_of: str | None
    streamed: bool
    last_event_at: float | None
    next_poll_at: float | None
    poll_interval: float | None
    poll_failures: int
    lease_owner: str | None
    lease_until: float | None
    tracked_at: float
    updated_at: float
    started_by: str | None
    capture: str | None
    capture_detail: str | None
    capture_due_at: float | None
    stream_alive_at: float | None
    reattach_count: int
    reattached_at: float | None
    unlisted: bool
    direct_until: float | None


class NodeRow(TypedDict):
    app: str
    id: str
    run_id: str
    node_id: str
    node_type: str | None
    title: str | None
    status: str
    loop_id: str | None
    loop_index: int | None
    iteration_id: str | None
    iteration_index: int | None
    retries: int
    error: str | None
    inputs: Any
    outputs: Any
    elapsed_time: float | None
    started_at: float | None
    finished_at: float | None
    seq: int


class RunHistoryRow(TypedDict):
    id: int
    app: str
    run_id: str
    at: float
    kind: str
    status: str | None
    node_id: str | None
    detail: dict[str, Any] | None


class ParkedRow(TypedDict):
    id: str
    workflow_run_id: str
    node_id: str
    apps: list[str]
    actor: str
    decision: dict[str, Any]
    parked_at: float
    expires_at: float
    status: str  # parked | applied | refused | expired
    checkpoint_id: str | None
    code: str | None
    settled_at: float | None


def as_row(row: Row[Any] | None) -> Any:
    """A result row as a plain dict (the caller's annotation names its TypedDict), or None."""
    return dict(row._mapping) if row is not None else None


def as_rows(rows) -> list[Any]:
    return [dict(r._mapping) for r in rows]
