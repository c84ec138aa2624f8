"""decision policies: votes, timers, claims, the policy snapshot; the hash-chained decision log

Revision ID: 0005
Revises: 0004

- checkpoints: `policy` (the effective policy snapshotted at open), `tally` (votes so far),
  `claimed_by` / `claimed_at` (a soft lock others see), `head_hash` (the newest history row's hash).
- checkpoint_history: `prev_hash`, `hash` (SHA-256 over the canonical row and the previous hash).
- votes: one per reviewer and checkpoint.
- checkpoint_timers: reminders, deadline warnings, escalation steps — rows swept by every decider.
- audit_anchors: a chain across the store of the checkpoints' chain heads (and of what was pruned).
Rows written before this revision are hashed here, so the chain covers the whole history.
"""
import sqlalchemy as sa
from alembic import op

from shared.store.audit import row_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("policy", sa.JSON))
        batch.add_column(sa.Column("tally", sa.JSON))
        batch.add_column(sa.Column("claimed_by", sa.String(128)))
        batch.add_column(sa.Column("claimed_at", sa.Float))
        batch.add_column(sa.Column("head_hash", sa.String(64)))
    with op.batch_alter_table("checkpoint_history") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("hash", sa.String(64)))
    op.create_table(
        "votes",
        sa.Column("checkpoint_id", sa.String(36), primary_key=True),
        sa.Column("voter", sa.String(128), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32)),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("message_id", sa.String(64)),
        sa.Column("feedback", sa.Text),
    )
    op.create_table(
        "checkpoint_timers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float),
        sa.Column("outcome", sa.String(16)),
        sa.UniqueConstraint("checkpoint_id", "kind", "step", name="uq_timer"),
    )
    op.create_index("ix_timers_due", "checkpoint_timers", ["fired_at", "due_at"])
    op.create_table(
        "audit_anchors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("heads", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    _hash_existing_history()


def _hash_existing_history() -> None:
    bind = op.get_bind()
    history = sa.table("checkpoint_history", *(sa.column(c) for c in (
        "id", "checkpoint_id", "at", "kind", "actor", "channel", "action", "outcome", "code", "message_id",
        "idempotency_key", "detail", "prev_hash", "hash")))
    history.c.detail.type = sa.JSON()
    checkpoints = sa.table("checkpoints", sa.column("id"), sa.column("head_hash"))
    heads: dict[str, str | None] = {}
    for row in bind.execute(sa.select(history).order_by(history.c.checkpoint_id, history.c.id)).mappings():
        prev = heads.get(row["checkpoint_id"])
        value = row_hash(dict(row), prev)
        bind.execute(history.update().where(history.c.id == row["id"]).values(prev_hash=prev, hash=value))
        heads[row["checkpoint_id"]] = value
    for checkpoint_id, head in heads.items():
        bind.execute(checkpoints.update().where(checkpoints.c.id == checkpoint_id).values(head_hash=head))


def downgrade() -> None:
    op.drop_table("audit_anchors")
    op.drop_index("ix_timers_due", "checkpoint_timers")
    op.drop_table("checkpoint_timers")
    op.drop_table("votes")
    with op.batch_alter_table("checkpoint_history") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    with op.batch_alter_table("checkpoints") as batch:
        for column in ("head_hash", "claimed_at", "claimed_by", "tally", "policy"):
            batch.drop_column(column)
