"""Table definitions (SQLAlchemy Core). Migrations in shared/migrations mirror these exactly."""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# JSON(none_as_null=False): a node output of JSON null is a value, not a missing one.
checkpoints = Table(
    "checkpoints", metadata,
    Column("id", String(36), primary_key=True),
    Column("app", String(64), nullable=False),
    Column("kind", String(16), nullable=False, default="http"),
    Column("workflow_run_id", String(64), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mode", String(16), nullable=False, default="hold"),
    Column("message", Text),
    Column("node_output", JSON(none_as_null=False)),
    Column("app_id", String(64)),
    Column("workflow_id", String(64)),
    Column("user", String(255)),
    Column("timeout_s", Float, nullable=False),
    Column("deadline", Float, nullable=False),
    Column("on_timeout", String(16), nullable=False),
    Column("default_output", JSON(none_as_null=False)),
    Column("assignees", JSON, nullable=False, default=list),
    Column("max_rounds", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("action", String(16)),
    Column("output", JSON(none_as_null=False)),
    Column("feedback", Text),
    Column("decided_by", String(128)),
    Column("reason", String(32)),
    Column("decision_channel", String(32)),
    # The Dify call currently held for this checkpoint (which ingest queue, which call).
    Column("reply_to", String(255)),
    Column("correlation_id", String(64)),
    Column("attach_count", Integer, nullable=False, default=0),
    # False between the commit of a resolution and the confirm of its publication (a tiny outbox).
    Column("published", Boolean, nullable=False, default=True),
    UniqueConstraint("workflow_run_id", "node_id", "round", name="uq_checkpoint_key"),
    Index("ix_checkpoints_status_deadline", "status", "deadline"),
    Index("ix_checkpoints_run_node", "workflow_run_id", "node_id"),
    Index("ix_checkpoints_unpublished", "published", "resolved_at"),
)

# Append-only: every state change and every decision attempt (applied or rejected).
history = Table(
    "checkpoint_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("checkpoint_id", String(36), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128)),
    Column("channel", String(32)),
    Column("action", String(16)),
    Column("outcome", String(16)),
    Column("code", String(64)),
    Column("message_id", String(64)),
    Column("idempotency_key", String(200)),
    Column("detail", JSON),
    Index("ix_history_checkpoint", "checkpoint_id", "id"),
    Index("ix_history_message", "message_id"),
    Index("ix_history_idem", "checkpoint_id", "idempotency_key"),
)
