"""Dify form checkpoints: captured form, its token, delivery state

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("form", sa.JSON))
        batch.add_column(sa.Column("secret", sa.String(255)))
        batch.add_column(sa.Column("delivery", sa.String(24)))
        batch.add_column(sa.Column("delivery_detail", sa.Text))
        batch.add_column(sa.Column("delivered_at", sa.Float))
    op.create_index("ix_checkpoints_delivery", "checkpoints", ["delivery", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_checkpoints_delivery", "checkpoints")
    with op.batch_alter_table("checkpoints") as batch:
        for column in ("delivered_at", "delivery_detail", "delivery", "secret", "form"):
            batch.drop_column(column)
