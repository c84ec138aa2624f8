"""run tracking: capture of forms of runs started elsewhere, lost-stream re-attach, status from the logs listing

Revision ID: 0008
Revises: 0007

- runs.started_by: who started the run in Dify, from its logs row (end_user | account:<email>): a run of a
  console account has no end user to re-attach with.
- runs.capture / capture_detail / capture_due_at: a paused run's Human Input form, captured by a
  re-attach with the run's own user (captured | unavailable | failed, and why); when to try next.
- runs.stream_alive_at / reattach_count / reattached_at: the last sign of a process reading the run's
  live stream (an event or a heartbeat); re-attaches after the reader was lost.
- runs.unlisted / direct_until: the logs listing does not show the run (it is polled one by one);
  direct polls go on until then even for a listed run (e.g. right after a form submit).
- node_executions.iteration_id / iteration_index: nodes inside an Iteration.
- discovery_watermarks.sweep_owner / sweep_until: the lease on an app's listing sweep.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("started_by", sa.String(255)))
        batch.add_column(sa.Column("capture", sa.String(16)))
        batch.add_column(sa.Column("capture_detail", sa.Text))
        batch.add_column(sa.Column("capture_due_at", sa.Float))
        batch.add_column(sa.Column("stream_alive_at", sa.Float))
        batch.add_column(sa.Column("reattach_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("reattached_at", sa.Float))
        batch.add_column(sa.Column("unlisted", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("direct_until", sa.Float))
    op.create_index("ix_runs_capture_due", "runs", ["capture_due_at"])
    with op.batch_alter_table("node_executions") as batch:
        batch.add_column(sa.Column("iteration_id", sa.String(128)))
        batch.add_column(sa.Column("iteration_index", sa.Integer))
    with op.batch_alter_table("discovery_watermarks") as batch:
        batch.add_column(sa.Column("sweep_owner", sa.String(64)))
        batch.add_column(sa.Column("sweep_until", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("discovery_watermarks") as batch:
        batch.drop_column("sweep_until")
        batch.drop_column("sweep_owner")
    with op.batch_alter_table("node_executions") as batch:
        batch.drop_column("iteration_index")
        batch.drop_column("iteration_id")
    op.drop_index("ix_runs_capture_due", "runs")
    with op.batch_alter_table("runs") as batch:
        for column in ("direct_until", "unlisted", "reattached_at", "reattach_count", "stream_alive_at",
                       "capture_due_at", "capture_detail", "capture", "started_by"):
            batch.drop_column(column)
