"""The tamper-evident decision log.

Every checkpoint history row carries `prev_hash` and `hash` = SHA-256 over the previous row's hash
and the row's canonical JSON, chained per checkpoint (the checkpoint keeps the head in `head_hash`).
The `opened` / `captured` row also hashes what the reviewer was shown (node output, message, policy,
form): `detail.shown`. Across the store, `audit_anchors` chain the heads of the checkpoints that
changed since the previous anchor — so deleting a checkpoint with its whole history is noticed too —
and record what retention pruned. `verify()` recomputes all of it and names the first broken link.

`row_hash` and `shown_hash` must never change meaning: stored hashes were made with them (the
migration that introduced them hashed the rows written before it, with the same functions).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text, update

from shared.store.prebuilt import Prebuilt
from shared.store.tables import audit_anchors, checkpoints, history

HASHED_FIELDS = ("checkpoint_id", "at", "kind", "actor", "channel", "action", "outcome", "code", "message_id",
                 "idempotency_key", "detail")
SHOWN_FIELDS = ("node_output", "message", "policy", "form")
_ANCHOR_LOCK = 727275
ANCHOR_OVERLAP_S = 60.0


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def row_hash(row: Mapping[str, Any], prev: str | None) -> str:
    body = canonical({k: row.get(k) for k in HASHED_FIELDS})
    return hashlib.sha256(f"{prev or ''}\n{body}".encode()).hexdigest()


def shown_hash(cp: Mapping[str, Any]) -> str:
    """What the reviewer was shown when the checkpoint opened."""
    return hashlib.sha256(canonical({k: cp.get(k) for k in SHOWN_FIELDS}).encode()).hexdigest()


def _anchor_hash(kind: str, at: float, heads: dict[str, str], prev: str | None) -> str:
    return hashlib.sha256(f"{prev or ''}\n{canonical({'kind': kind, 'at': at, 'heads': heads})}".encode()).hexdigest()


# ---------------------------------------------------------------------- writing
def append(conn: Connection, checkpoint_id: str, values: dict[str, Any]) -> str:
    """Insert one history row chained to the checkpoint's head; returns the new head. The head is read
    with a row lock (PostgreSQL), so two deciders appending to one checkpoint at once cannot fork it;
    SQLite's write transactions are serial anyway."""
    c = checkpoints.c
    prev = conn.execute(select(c.head_hash).where(c.id == checkpoint_id).with_for_update()).scalar()
    row = {"checkpoint_id": checkpoint_id, **values}
    digest = row_hash(row, prev)
    conn.execute(history.insert().values(**row, prev_hash=prev, hash=digest))
    # updated_at moves with the head, so the next anchor finds the change.
    conn.execute(update(checkpoints).where(c.id == checkpoint_id).values(head_hash=digest, updated_at=values["at"]))
    return digest


def prepare(checkpoint_id: str, values: dict[str, Any], prev: str | None) -> dict[str, Any]:
    """A history row ready to insert after `prev`, with its hashes: for callers that set the checkpoint's
    head in a statement they run anyway (the hot path's insert or resolve) instead of a read and an
    update of their own."""
    row = {"checkpoint_id": checkpoint_id, **values}
    return {**row, "prev_hash": prev, "hash": row_hash(row, prev)}


def insert_prepared(conn: Connection, row: dict[str, Any]) -> None:
    _INSERT.rows(conn, row)


_INSERT = Prebuilt(history.insert())  # the hot path's history row (prebuilt.py)


def anchor(conn: Connection, now: float | None = None, kind: str = "anchor",
           heads: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Write the next anchor: the heads of checkpoints changed since the last one (or `heads`, for a
    prune). None when there is nothing new, or another decider is anchoring right now."""
    if conn.dialect.name == "postgresql" and not conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _ANCHOR_LOCK}).scalar():
        return None
    a = audit_anchors.c
    last = conn.execute(select(audit_anchors).order_by(a.id.desc()).limit(1)).mappings().first()
    now = time.time() if now is None else now
    if heads is None:
        # Overlap the window: a transaction that committed after the last anchor may carry an earlier time.
        since = (last["at"] - ANCHOR_OVERLAP_S) if last else 0.0
        c = checkpoints.c
        rows = conn.execute(select(c.id, c.head_hash).where(c.updated_at >= since, c.head_hash.is_not(None))).all()
        heads = {cid: head for cid, head in rows}
        if last is not None and last["kind"] == "anchor":
            heads = {cid: h for cid, h in heads.items() if (last["heads"] or {}).get(cid) != h}
        if not heads:
            return None
    prev = last["hash"] if last else None
    digest = _anchor_hash(kind, now, heads, prev)
    conn.execute(audit_anchors.insert().values(at=now, kind=kind, heads=heads, prev_hash=prev, hash=digest))
    return {"at": now, "kind": kind, "heads": heads, "hash": digest}


# ---------------------------------------------------------------------- checking
@dataclass(frozen=True)
class Broken:
    """The first link that does not hold, in words."""

    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def _history_by_checkpoint(conn: Connection) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    h = history.c
    current: str | None = None
    rows: list[dict[str, Any]] = []
    for row in conn.execute(select(history).order_by(h.checkpoint_id, h.id)).mappings():
        if row["checkpoint_id"] != current:
            if current is not None:
                yield current, rows
            current, rows = row["checkpoint_id"], []
        rows.append(dict(row))
    if current is not None:
        yield current, rows


def verify(conn: Connection) -> tuple[Broken | None, dict[str, int]]:
    """(the first broken link or None, counts of what was checked)."""
    counts = {"checkpoints": 0, "rows": 0, "anchors": 0}
    cps = {r["id"]: dict(r) for r in conn.execute(select(checkpoints)).mappings()}
    known: dict[str, set[str]] = {}
    for checkpoint_id, rows in _history_by_checkpoint(conn):
        counts["checkpoints"] += 1
        prev: str | None = None
        hashes = set()
        for row in rows:
            counts["rows"] += 1
            where = f"checkpoint {checkpoint_id} history row {row['id']} ({row['kind']} at {row['at']:.3f})"
            if row["prev_hash"] != prev:
                return Broken(where, "its prev_hash is not the hash of the row before it: a row was removed "
                                     "or inserted"), counts
            if row_hash(row, prev) != row["hash"]:
                return Broken(where, "its hash does not match its content: the row was edited"), counts
            shown = (row["detail"] or {}).get("shown") if row["kind"] in ("opened", "captured") else None
            cp = cps.get(checkpoint_id)
            if shown and cp is not None and shown_hash(cp) != shown:
                return Broken(f"checkpoint {checkpoint_id}", "what it shows (node output, message, policy, form) "
                                                            "is not what was shown when it opened"), counts
            prev = row["hash"]
            hashes.add(row["hash"])
        known[checkpoint_id] = hashes
        cp = cps.get(checkpoint_id)
        if cp is not None and cp["head_hash"] != prev:
            return Broken(f"checkpoint {checkpoint_id}", "its head_hash is not its newest history row's hash: "
                                                        "rows were removed from the end"), counts
    for checkpoint_id, cp in cps.items():
        if cp["head_hash"] and checkpoint_id not in known:
            return Broken(f"checkpoint {checkpoint_id}", "it has a chain head but no history rows"), counts
    a = audit_anchors.c
    prev_anchor: str | None = None
    pruned: set[str] = set()
    anchors = [dict(r) for r in conn.execute(select(audit_anchors).order_by(a.id)).mappings()]
    for row in anchors:
        if row["kind"] == "prune":
            pruned.update(row["heads"] or {})
    for row in anchors:
        counts["anchors"] += 1
        where = f"audit anchor {row['id']} ({row['kind']} at {row['at']:.3f})"
        if row["prev_hash"] != prev_anchor or _anchor_hash(row["kind"], row["at"], row["heads"] or {},
                                                           prev_anchor) != row["hash"]:
            return Broken(where, "the anchor chain does not hold: an anchor was edited or removed"), counts
        for checkpoint_id, head in (row["heads"] or {}).items():
            if checkpoint_id in pruned and checkpoint_id not in known:
                continue
            if head not in known.get(checkpoint_id, set()):
                return Broken(where, f"checkpoint {checkpoint_id}'s recorded head is no longer in its history: "
                                     "history was removed or rewritten"), counts
        prev_anchor = row["hash"]
    return None, counts


def export(conn: Connection, since: float = 0.0) -> Iterator[dict[str, Any]]:
    """History rows (with their hashes) from `since`, oldest first, then the anchors: for JSON lines."""
    h = history.c
    for row in conn.execute(select(history).where(h.at >= since).order_by(h.id)).mappings():
        yield {"record": "history", **dict(row)}
    a = audit_anchors.c
    for row in conn.execute(select(audit_anchors).where(a.at >= since).order_by(a.id)).mappings():
        yield {"record": "anchor", **dict(row)}
