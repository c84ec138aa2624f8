"""apps are tenants: the app in every key; decisions parked until their checkpoint opens; keys

Revision ID: 0004
Revises: 0003

- checkpoints: unique key (app, run, node, round) instead of (run, node, round): app B naming app
  A's run opens B's own checkpoint, never re-attaches to A's.
- runs, node_executions: primary key (app, id); run_history gains `app`. A run id reported by two
  apps is two runs, one per app, and nothing of one is visible through the other.
- parked_decisions: a decision that arrived before its checkpoint (a 202 is a promise).
- hitl_keys: the internal signing key every process shares through the store.
"""
import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _replace_primary_key(table: str, columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, columns)
    else:  # SQLite: batch mode rebuilds the table with the new key (and warns that it differs: it should)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.create_primary_key(f"pk_{table}", columns)


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_constraint("uq_checkpoint_key", type_="unique")
        batch.create_unique_constraint("uq_checkpoint_key", ["app", "workflow_run_id", "node_id", "round"])
    op.drop_index("ix_checkpoints_run_node", "checkpoints")
    op.create_index("ix_checkpoints_run_node", "checkpoints", ["app", "workflow_run_id", "node_id"])

    _replace_primary_key("runs", ["app", "id"])
    with op.batch_alter_table("node_executions") as batch:
        batch.add_column(sa.Column("app", sa.String(64), nullable=False, server_default=""))
    op.execute("UPDATE node_executions SET app = COALESCE((SELECT runs.app FROM runs "
               "WHERE runs.id = node_executions.run_id), '')")
    _replace_primary_key("node_executions", ["app", "id"])
    op.drop_index("ix_nodes_run", "node_executions")
    op.create_index("ix_nodes_run", "node_executions", ["app", "run_id", "seq"])
    with op.batch_alter_table("run_history") as batch:
        batch.add_column(sa.Column("app", sa.String(64), nullable=False, server_default=""))
    op.execute("UPDATE run_history SET app = COALESCE((SELECT runs.app FROM runs "
               "WHERE runs.id = run_history.run_id), '')")
    op.drop_index("ix_run_history_run", "run_history")
    op.create_index("ix_run_history_run", "run_history", ["app", "run_id", "id"])

    op.create_table(
        "parked_decisions",
        sa.Column("id", sa.String(64), primary_key=True),  # the decision's message id
        sa.Column("workflow_run_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("apps", sa.JSON, nullable=False),  # the apps the actor may decide for
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("decision", sa.JSON, nullable=False),
        sa.Column("parked_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # parked | applied | refused | expired
        sa.Column("checkpoint_id", sa.String(36)),
        sa.Column("code", sa.String(64)),
        sa.Column("settled_at", sa.Float),
    )
    op.create_index("ix_parked_target", "parked_decisions", ["workflow_run_id", "node_id", "status"])
    op.create_index("ix_parked_expiry", "parked_decisions", ["status", "expires_at"])
    op.create_table(
        "hitl_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hitl_keys")
    op.drop_table("parked_decisions")
    op.drop_index("ix_run_history_run", "run_history")
    op.create_index("ix_run_history_run", "run_history", ["run_id", "id"])
    with op.batch_alter_table("run_history") as batch:
        batch.drop_column("app")
    op.drop_index("ix_nodes_run", "node_executions")
    _replace_primary_key("node_executions", ["id"])
    op.create_index("ix_nodes_run", "node_executions", ["run_id", "seq"])
    with op.batch_alter_table("node_executions") as batch:
        batch.drop_column("app")
    _replace_primary_key("runs", ["id"])
    op.drop_index("ix_checkpoints_run_node", "checkpoints")
    op.create_index("ix_checkpoints_run_node", "checkpoints", ["workflow_run_id", "node_id"])
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_constraint("uq_checkpoint_key", type_="unique")
        batch.create_unique_constraint("uq_checkpoint_key", ["workflow_run_id", "node_id", "round"])
