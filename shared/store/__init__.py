"""The SQL store: SQLite file by default, PostgreSQL for several replicas; Alembic migrations."""
from shared.store import counting
from shared.store.db import Database

counting.install()  # statements, transactions, round trips per process (hitl_store_*_total)

__all__ = ["Database"]
