"""Alembic environment: the URL comes from the caller (shared.store.db.migrate), never a file."""
from alembic import context

from shared.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `hitl db upgrade` (shared.store.db.migrate)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
