"""checkpoints and their append-only history

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workflow_run_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("node_output", sa.JSON(none_as_null=False)),
        sa.Column("app_id", sa.String(64)),
        sa.Column("workflow_id", sa.String(64)),
        sa.Column("user", sa.String(255)),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("deadline", sa.Float, nullable=False),
        sa.Column("on_timeout", sa.String(16), nullable=False),
        sa.Column("default_output", sa.JSON(none_as_null=False)),
        sa.Column("assignees", sa.JSON, nullable=False),
        sa.Column("max_rounds", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("action", sa.String(16)),
        sa.Column("output", sa.JSON(none_as_null=False)),
        sa.Column("feedback", sa.Text),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("reason", sa.String(32)),
        sa.Column("decision_channel", sa.String(32)),
        sa.Column("reply_to", sa.String(255)),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("attach_count", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.UniqueConstraint("workflow_run_id", "node_id", "round", name="uq_checkpoint_key"),
    )
    op.create_index("ix_checkpoints_status_deadline", "checkpoints", ["status", "deadline"])
    op.create_index("ix_checkpoints_run_node", "checkpoints", ["workflow_run_id", "node_id"])
    op.create_index("ix_checkpoints_unpublished", "checkpoints", ["published", "resolved_at"])
    op.create_table(
        "checkpoint_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("channel", sa.String(32)),
        sa.Column("action", sa.String(16)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("code", sa.String(64)),
        sa.Column("message_id", sa.String(64)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("detail", sa.JSON),
    )
    op.create_index("ix_history_checkpoint", "checkpoint_history", ["checkpoint_id", "id"])
    op.create_index("ix_history_message", "checkpoint_history", ["message_id"])
    op.create_index("ix_history_idem", "checkpoint_history", ["checkpoint_id", "idempotency_key"])


def downgrade() -> None:
    op.drop_table("checkpoint_history")
    op.drop_table("checkpoints")
