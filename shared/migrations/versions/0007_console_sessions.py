"""console sign-ins as rows: sign-out revokes them on every replica; inbox indexes

Revision ID: 0007
Revises: 0006

- console_sessions: one row per sign-in (the cookie holds a random token, the row its SHA-256).
- checkpoints: indexes for the inbox's other statuses (newest decided first) and per-app listings,
  so that paging stays fast with many thousands of rows.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("groups", sa.JSON, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_reason", sa.String(32)),
        sa.Column("id_token", sa.Text),
    )
    op.create_index("ix_console_sessions_reviewer", "console_sessions", ["reviewer", "revoked_at"])
    op.create_index("ix_console_sessions_expiry", "console_sessions", ["expires_at"])
    op.create_index("ix_checkpoints_status_resolved", "checkpoints", ["status", "resolved_at"])
    op.create_index("ix_checkpoints_app_status", "checkpoints", ["app", "status", "deadline"])


def downgrade() -> None:
    op.drop_index("ix_checkpoints_app_status", "checkpoints")
    op.drop_index("ix_checkpoints_status_resolved", "checkpoints")
    op.drop_index("ix_console_sessions_expiry", "console_sessions")
    op.drop_index("ix_console_sessions_reviewer", "console_sessions")
    op.drop_table("console_sessions")
