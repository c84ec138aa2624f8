"""Operator commands on the store itself: `hitl audit verify|export` (the hash-chained decision log)
and `hitl prune` (retention). They read HITL_DATABASE_URL (or a HITL_CONFIG_FILE) like the services."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from typing import Any

from services.cli.helptext import command

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _db():
    from shared.settings import load_settings
    from shared.store import Database

    db = Database(load_settings().database_url)
    db.migrate()
    return db


def duration_s(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: a number with s, m, h or d (e.g. 90d)")
    return float(m.group(1)) * UNITS[m.group(2)]


def moment(text: str) -> float:
    """A Unix time, an ISO 8601 date/time, or an age like 7d (that long ago)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return time.time() - duration_s(text)


def cmd_verify(_args: argparse.Namespace) -> None:
    from shared.store import audit

    db = _db()
    with db.read() as conn:
        broken, counts = audit.verify(conn)
    if broken is not None:
        print(f"BROKEN: {broken}")
        sys.exit(1)
    print(f"ok: {counts['rows']} history rows of {counts['checkpoints']} checkpoints and {counts['anchors']} "
          "anchors verified")


def cmd_export(args: argparse.Namespace) -> None:
    from shared.store import audit

    db = _db()
    with db.read() as conn:
        for record in audit.export(conn, since=args.since):
            print(json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str))


def cmd_prune(args: argparse.Namespace) -> None:
    from shared.store import retention

    db = _db()
    before = time.time() - args.older_than
    total: dict[str, Any] = {"checkpoints": 0, "history_rows": 0, "runs": 0, "parked": 0}
    while True:
        with db.write() as conn:
            done = retention.prune(conn, before, db.now())
        for key in total:
            total[key] += getattr(done, key)
        if not (done.checkpoints or done.runs or done.parked):
            break
    print("pruned " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in total.items())
          + f" older than {datetime.fromtimestamp(before).isoformat(timespec='seconds')}")


STORE_ENV = (("HITL_DATABASE_URL", "the store (the services' own)"),
             ("HITL_CONFIG_FILE", "a YAML/JSON file with the same settings (the environment wins)"))


def add_audit_commands(sub) -> None:
    a = command(sub, "audit", summary="the tamper-evident decision log",
                description="Every history row is chained by SHA-256 to the one before it, per checkpoint, and "
                            "anchors chain the checkpoints' heads across the store. `verify` recomputes all of "
                            "it and names the first broken link; `export` writes the rows with their hashes.",
                examples=["hitl audit verify", "hitl audit export --since 7d > audit.jsonl"], env=STORE_ENV)
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = command(asub, "verify", summary="recompute every chain; exit 1 and name the first broken link",
                description="Recomputes every checkpoint's history chain, what each reviewer was shown when the "
                            "checkpoint opened, and the anchors across the store; prints what it checked, or "
                            "the first broken link (an edited or removed row, a changed output, a checkpoint "
                            "deleted with its history) and exits 1.",
                examples=["hitl audit verify"], env=STORE_ENV)
    v.set_defaults(fn=cmd_verify)
    e = command(asub, "export", summary="history rows and anchors with their hashes, as JSON lines",
                description="Writes every history row since a moment (with prev_hash and hash), then the "
                            "anchors, one JSON object per line, for an archive or another system to check.",
                examples=["hitl audit export --since 2026-11-01 > november.jsonl"], env=STORE_ENV)
    e.add_argument("--since", type=moment, default=0.0, help="a Unix time, an ISO date, or an age like 7d")
    e.add_argument("--format", choices=["jsonl"], default="jsonl", help="the output format: JSON lines")
    e.set_defaults(fn=cmd_export)
    p = command(sub, "prune", summary="delete what is older than the retention period",
                description="Deletes resolved checkpoints (with history, votes, timers), finished runs (with "
                            "nodes and history) and settled parked decisions older than --older-than; a prune "
                            "anchor keeps the decision log verifiable. The decider does the same on its own "
                            "when HITL_RETENTION_DAYS is set.",
                examples=["hitl prune --older-than 90d"], env=STORE_ENV)
    p.add_argument("--older-than", type=duration_s, required=True, help="an age: a number with s, m, h or d")
    p.set_defaults(fn=cmd_prune)
