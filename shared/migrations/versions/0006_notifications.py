"""the notifier: one row per platform message, callbacks and link uses recorded, used link nonces

Revision ID: 0006
Revises: 0005

- notifications: a card per (checkpoint, recipient, event) and the update of each card once its
  checkpoint closed — unique, so a redelivered event sends nothing twice; the platform's message
  reference for the update; the sender's lease; the deciding click's update token.
- notification_callbacks: every platform callback and decision-link use, decided or refused,
  unique per (channel, platform action id) so a retried callback or a double click decides once.
- notification_link_nonces: a decision link is single use.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("event", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("parent_id", sa.String(36)),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("address_key", sa.String(64), nullable=False),
        sa.Column("target_kind", sa.String(8), nullable=False),
        sa.Column("reviewer", sa.String(64)),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("lease_until", sa.Float),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("ref", sa.JSON),
        sa.Column("message_key", sa.String(255)),
        sa.Column("update_token", sa.String(255)),
        sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("event_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("checkpoint_id", "channel", "address_key", "event", name="uq_notification_once"),
    )
    op.create_index("ix_notifications_checkpoint", "notifications", ["checkpoint_id"])
    op.create_index("ix_notifications_message", "notifications", ["channel", "message_key"])
    op.create_table(
        "notification_callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("idem_key", sa.String(200)),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("platform_user", sa.String(255)),
        sa.Column("reviewer", sa.String(64)),
        sa.Column("checkpoint_id", sa.String(36)),
        sa.Column("action", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("message", sa.Text),
        sa.UniqueConstraint("channel", "idem_key", name="uq_notification_callback_key"),
    )
    op.create_index("ix_notification_callbacks_checkpoint", "notification_callbacks", ["checkpoint_id"])
    op.create_table(
        "notification_link_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_link_nonces")
    op.drop_index("ix_notification_callbacks_checkpoint", "notification_callbacks")
    op.drop_table("notification_callbacks")
    op.drop_index("ix_notifications_message", "notifications")
    op.drop_index("ix_notifications_checkpoint", "notifications")
    op.drop_table("notifications")
