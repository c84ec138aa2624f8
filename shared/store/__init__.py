"""The SQL store: SQLite file by default, PostgreSQL for several replicas; Alembic migrations."""
from shared.store.db import Database

__all__ = ["Database"]
