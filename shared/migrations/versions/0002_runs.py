"""run monitoring: runs, node executions, run history, discovery watermarks

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dify_status", sa.String(32)),
        sa.Column("stale_record", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("task_id", sa.String(64)),
        sa.Column("user", sa.String(255)),
        sa.Column("workflow_id", sa.String(64)),
        sa.Column("inputs", sa.JSON),
        sa.Column("outputs", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("elapsed_time", sa.Float),
        sa.Column("total_steps", sa.Integer),
        sa.Column("exceptions_count", sa.Integer),
        sa.Column("created_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("parent_run_id", sa.String(64)),
        sa.Column("overrides", sa.JSON),
        sa.Column("continuation_of", sa.String(36)),
        sa.Column("streamed", sa.Boolean, nullable=False),
        sa.Column("last_event_at", sa.Float),
        sa.Column("next_poll_at", sa.Float),
        sa.Column("poll_interval", sa.Float),
        sa.Column("poll_failures", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Float),
        sa.Column("tracked_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_runs_next_poll", "runs", ["next_poll_at"])
    op.create_index("ix_runs_app_status", "runs", ["app", "status"])
    op.create_index("ix_runs_continuation", "runs", ["continuation_of"])
    op.create_table(
        "node_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("node_type", sa.String(32)),
        sa.Column("title", sa.String(255)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("loop_id", sa.String(128)),
        sa.Column("loop_index", sa.Integer),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("inputs", sa.JSON),
        sa.Column("outputs", sa.JSON),
        sa.Column("elapsed_time", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_nodes_run", "node_executions", ["run_id", "seq"])
    op.create_table(
        "run_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("node_id", sa.String(128)),
        sa.Column("detail", sa.JSON),
    )
    op.create_index("ix_run_history_run", "run_history", ["run_id", "id"])
    op.create_table(
        "discovery_watermarks",
        sa.Column("app", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("discovery_watermarks", "run_history", "node_executions", "runs"):
        op.drop_table(table)
