"""Keys every process shares through the store, created once by whichever process comes first."""
from __future__ import annotations

import secrets
import time

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.tables import hitl_keys

INTERNAL = "internal-signing"


def get_or_create(conn: Connection, name: str) -> str:
    """The key named `name`; a new random one if none exists (two processes racing get the same)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(hitl_keys).values(name=name, value=secrets.token_urlsafe(48), created_at=time.time())
                 .on_conflict_do_nothing(index_elements=["name"]))
    return conn.execute(select(hitl_keys.c.value).where(hitl_keys.c.name == name)).scalar_one()


def get(conn: Connection, name: str) -> str | None:
    """The key named `name`, if some process has created it (operator tools read, never create)."""
    return conn.execute(select(hitl_keys.c.value).where(hitl_keys.c.name == name)).scalar()
