"""Console sign-ins: one row per sign-in, revoked at sign-out (the console is their only writer).

The browser's cookie holds a random token; the row is keyed by its SHA-256, so a copy of the table
holds no live cookie. Every console replica reads the same rows: a sign-out on one ends the session
on all of them.
"""
from __future__ import annotations

import hashlib
from typing import Any, TypedDict

from sqlalchemy import Connection, delete, select, update

from shared.store.rows import as_row
from shared.store.tables import console_sessions

s = console_sessions.c


class SessionRow(TypedDict):
    id: str
    reviewer: str
    method: str  # password | oidc
    groups: list[str]
    fingerprint: str
    csrf: str
    address: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None
    revoked_reason: str | None
    id_token: str | None


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: Connection, token: str, *, reviewer: str, method: str, groups: list[str], fingerprint: str,
           csrf: str, address: str | None, now: float, expires_at: float, id_token: str | None = None) -> None:
    conn.execute(console_sessions.insert().values(
        id=token_key(token), reviewer=reviewer, method=method, groups=groups, fingerprint=fingerprint, csrf=csrf,
        address=address, created_at=now, expires_at=expires_at, id_token=id_token))


def live(conn: Connection, token: str, now: float) -> SessionRow | None:
    """The session of this token while it is neither revoked nor expired."""
    q = select(console_sessions).where(s.id == token_key(token), s.revoked_at.is_(None), s.expires_at > now)
    return as_row(conn.execute(q).first())


def get(conn: Connection, token: str) -> SessionRow | None:
    return as_row(conn.execute(select(console_sessions).where(s.id == token_key(token))).first())


def revoke(conn: Connection, token: str, reason: str, now: float) -> SessionRow | None:
    """Revoke one session; the row as it was when this call revoked it (None: already revoked or unknown)."""
    result = conn.execute(update(console_sessions).where(s.id == token_key(token), s.revoked_at.is_(None))
                          .values(revoked_at=now, revoked_reason=reason).returning(*console_sessions.c))
    return as_row(result.first())


def revoke_reviewer(conn: Connection, reviewer: str, reason: str, now: float, *, method: str | None = None,
                    keep_fingerprint: str | None = None) -> int:
    """Revoke every live session of `reviewer` (signed in by `method`; except those signed in with
    `keep_fingerprint`)."""
    cond = [s.reviewer == reviewer, s.revoked_at.is_(None)]
    if method is not None:
        cond.append(s.method == method)
    if keep_fingerprint is not None:
        cond.append(s.fingerprint != keep_fingerprint)
    return conn.execute(update(console_sessions).where(*cond).values(revoked_at=now, revoked_reason=reason)).rowcount


def live_reviewers(conn: Connection, now: float) -> list[dict[str, Any]]:
    """(reviewer, method, fingerprint) of every live session: what a start-up sweep compares with the
    configuration."""
    q = (select(s.reviewer, s.method, s.fingerprint).where(s.revoked_at.is_(None), s.expires_at > now)
         .distinct())
    return [dict(r._mapping) for r in conn.execute(q)]


def prune(conn: Connection, before: float) -> int:
    """Delete rows that ended (expired or revoked) before `before`: they keep nobody signed in."""
    q = delete(console_sessions).where((s.expires_at < before) | (s.revoked_at < before))
    return conn.execute(q).rowcount
