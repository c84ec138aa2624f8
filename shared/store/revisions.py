"""Is the database already at the newest schema? Answered without Alembic.

Every process migrates at boot (HITL_AUTO_MIGRATE), and all but the first find nothing to do. Alembic
and Mako cost ~10 MB of memory and ~0.3 s of imports in each of them for that answer. Here it is read
from the migration files' own `revision` / `down_revision` lines and the `alembic_version` table;
anything unexpected (no table yet, a branch, an unreadable file) says "not known", and Alembic decides.
"""
from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Connection, text

_LINE = re.compile(r'^(revision|down_revision)\s*=\s*(None|"([^"]+)"|\'([^\']+)\')\s*$', re.MULTILINE)


def declared_head(versions: Path) -> str | None:
    """The one revision no other migration file builds on; None when that is not plain to see."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found = {m.group(1): m.group(3) or m.group(4) for m in _LINE.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found or found["revision"] is None:
            return None  # a file this reader does not understand (a merge, a computed id)
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(conn: Connection) -> str | None:
    """The revision the database says it is at; None without the table or with several rows."""
    try:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception:
        return None
    return rows[0][0] if len(rows) == 1 else None
