"""Checkpoint rows and their history: the queries, nothing else.

Every function takes an open Connection so callers decide the transaction. State changes are
conditional UPDATEs (`... WHERE status = 'open'`) whose row count says who won. The app is part of
every key and every lookup by run (STYLE 14): nothing here finds one app's checkpoint through
another app's run id. `apps=None` in a listing means "every app" (an admin, or the system).
"""
from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Text, and_, bindparam, cast, false, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store import audit, one_trip
from shared.store.prebuilt import Prebuilt
from shared.store.rows import CheckpointRow, HistoryRow, as_row, as_rows
from shared.store.tables import CHECKPOINT_KEY, checkpoints, history

OPEN = "open"
c = checkpoints.c

# The hot path (one request, one decision) runs prebuilt statements with bound parameters: building a
# statement per call cost more CPU (SQLAlchemy construction + cache keys) than the database itself.
# Parameter names of WHERE clauses start with "b_": SET/VALUES names are the columns themselves.
# Prebuilt (prebuilt.py) also skips SQLAlchemy's per-call execution work for them.
_GET = Prebuilt(select(checkpoints).where(c.id == bindparam("b_id")))
_BY_KEY = Prebuilt(select(checkpoints).where(c.app == bindparam("b_app"), c.workflow_run_id == bindparam("b_run"),
                                   c.node_id == bindparam("b_node"), c.round == bindparam("b_round")))
_LATEST = Prebuilt(select(checkpoints).where(c.app == bindparam("b_app"), c.workflow_run_id == bindparam("b_run"),
                                     c.node_id == bindparam("b_node"))
           .order_by(c.round.desc()).limit(1))
_INSERT_IF_ABSENT = {
    name: Prebuilt(dialect.insert(checkpoints).on_conflict_do_nothing(index_elements=CHECKPOINT_KEY)
                   .returning(*checkpoints.c))
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_ATTACH = (update(checkpoints).where(c.id == bindparam("b_id"), c.status == OPEN)
           .values(attach_count=c.attach_count + 1).returning(c.id))
_RESOLVE = update(checkpoints).where(c.id == bindparam("b_id"), c.status == OPEN).returning(*checkpoints.c)
# The same, also moving the history chain's head — only if nobody appended since we read it.
_RESOLVE_CHAINED = Prebuilt(update(checkpoints).where(c.id == bindparam("b_id"), c.status == OPEN,
                                              c.head_hash.is_not_distinct_from(bindparam("b_prev")))
                    .returning(*checkpoints.c))
_FIRST_DECISION_BY_MESSAGE = Prebuilt(select(history).where(history.c.checkpoint_id == bindparam("b_id"),
                                                    history.c.kind == "decision",
                                                    or_(history.c.message_id == bindparam("b_message"),
                                                        history.c.idempotency_key == bindparam("b_key")))
                              .order_by(history.c.id).limit(1))
_WINNING = Prebuilt(select(history).where(history.c.checkpoint_id == bindparam("b_id"), history.c.outcome == "applied")
            .order_by(history.c.id).limit(1))


def _in_apps(apps: Collection[str] | None):
    return true() if apps is None else c.app.in_(sorted(apps))


def get(conn: Connection, checkpoint_id: str, apps: Collection[str] | None = None) -> CheckpointRow | None:
    """The checkpoint, if it exists and belongs to one of `apps` (None: any app)."""
    row: CheckpointRow | None = _GET.first(conn, {"b_id": checkpoint_id})
    if row is not None and apps is not None and row["app"] not in apps:
        return None
    return row


def by_key(conn: Connection, app: str, run_id: str, node_id: str, round_: int) -> CheckpointRow | None:
    return _BY_KEY.first(conn, {"b_app": app, "b_run": run_id, "b_node": node_id, "b_round": round_})


def latest(conn: Connection, app: str, run_id: str, node_id: str) -> CheckpointRow | None:
    return _LATEST.first(conn, {"b_app": app, "b_run": run_id, "b_node": node_id})


def latest_in_apps(conn: Connection, apps: Collection[str] | None, run_id: str, node_id: str) -> list[CheckpointRow]:
    """The newest round of (run, node) in each of `apps` that has one (a decision by run and node)."""
    q = (select(checkpoints).where(_in_apps(apps), c.workflow_run_id == run_id, c.node_id == node_id)
         .order_by(c.app, c.round.desc()))
    newest: dict[str, CheckpointRow] = {}
    for row in as_rows(conn.execute(q)):
        newest.setdefault(row["app"], row)
    return list(newest.values())


def open_of_run(conn: Connection, app: str, run_id: str) -> list[CheckpointRow]:
    q = select(checkpoints).where(c.app == app, c.workflow_run_id == run_id, c.status == OPEN)
    return as_rows(conn.execute(q))


def forms_of_run(conn: Connection, app: str, run_id: str) -> list[CheckpointRow]:
    q = select(checkpoints).where(c.app == app, c.workflow_run_id == run_id, c.kind == "dify-form")
    return as_rows(conn.execute(q))


def rounds(conn: Connection, app: str, run_id: str, node_id: str) -> list[CheckpointRow]:
    q = (select(checkpoints).where(c.app == app, c.workflow_run_id == run_id, c.node_id == node_id)
         .order_by(c.round))
    return as_rows(conn.execute(q))


def set_delivery(conn: Connection, checkpoint_id: str, delivery: str, detail: str | None, now: float) -> None:
    values: dict[str, Any] = dict(delivery=delivery, delivery_detail=detail, updated_at=now)
    if delivery == "delivered":
        values["delivered_at"] = now
    conn.execute(update(checkpoints).where(c.id == checkpoint_id).values(**values))


def resume_overdue(conn: Connection, before: float, limit: int = 100) -> list[CheckpointRow]:
    """Delivered forms whose run has not been seen leaving `paused` since `before`."""
    q = select(checkpoints).where(c.delivery == "delivered", c.delivered_at <= before).limit(limit)
    return as_rows(conn.execute(q))


UNSETTLED_DELIVERY = ("pending", "delivered", "resume_stuck", "resume_unconfirmed")
_AWAITS_RESUME = (select(c.id).where(c.app == bindparam("b_app"), c.workflow_run_id == bindparam("b_run"),
                                     c.kind == "dify-form", or_(c.status == OPEN, c.delivery.in_(UNSETTLED_DELIVERY)))
                  .limit(1))


def awaits_resume(conn: Connection, app: str, run_id: str) -> bool:
    """A Dify form of this run is open (it may be submitted in Dify itself) or decided with its resume
    not yet confirmed: the run's end is news for it."""
    return conn.execute(_AWAITS_RESUME, {"b_app": app, "b_run": run_id}).first() is not None


def insert_if_absent(conn: Connection, values: dict[str, Any]) -> CheckpointRow | None:
    """Insert a new checkpoint unless its key exists; the new row when this call created it."""
    # RETURNING rather than rowcount: psycopg 3 reports -1 for a plain INSERT ... ON CONFLICT here.
    return _INSERT_IF_ABSENT[conn.dialect.name].first(conn, values)


def attach(conn: Connection, checkpoint_id: str, reply_to: str | None, correlation_id: str | None,
           now: float) -> bool:
    """Point an open checkpoint at the Dify call now held for it; False if no longer open."""
    result = conn.execute(_ATTACH, {"b_id": checkpoint_id, "reply_to": reply_to, "correlation_id": correlation_id,
                                    "updated_at": now})
    return result.first() is not None


def resolve(conn: Connection, checkpoint_id: str, *, status: str, action: str, output: Any, feedback: str | None,
            decided_by: str, reason: str, channel: str | None, now: float,
            published: bool = True) -> CheckpointRow | None:
    """Close an open checkpoint; returns the updated row, or None when another decision won.

    `published=False` marks a resolution nobody will re-send on redelivery (a deadline expiry): the
    sweeper publishes it again until mark_published() records the broker's confirm."""
    result = conn.execute(_RESOLVE, dict(
        b_id=checkpoint_id, status=status, action=action, output=output, feedback=feedback, decided_by=decided_by,
        reason=reason, decision_channel=channel, resolved_at=now, updated_at=now, published=published))
    return as_row(result.first())


def resolve_with_history(conn: Connection, cp: CheckpointRow, history_values: dict[str, Any], *, status: str,
                         action: str, output: Any, feedback: str | None, decided_by: str, reason: str,
                         channel: str | None, now: float) -> CheckpointRow | None:
    """Close an open checkpoint and append its history row (one statement on PostgreSQL, two on
    SQLite): the row is chained to the head read with `cp`, and the resolve moves the head in the
    same UPDATE. None when another
    decision won, or another row was appended since `cp` was read (the caller then takes the
    slower path: `resolve` and `append_history` under the row's lock)."""
    row = audit.prepare(cp["id"], history_values, cp["head_hash"])
    fields = dict(status=status, action=action, output=output, feedback=feedback, decided_by=decided_by,
                  reason=reason, decision_channel=channel, resolved_at=now, updated_at=now, published=True,
                  head_hash=row["hash"])
    if conn.dialect.name == "postgresql":  # one statement (one_trip.py)
        return one_trip.resolve(conn, cp["id"], cp["head_hash"], fields, row)
    resolved: CheckpointRow | None = _RESOLVE_CHAINED.first(conn, dict(fields, b_id=cp["id"], b_prev=cp["head_hash"]))
    if resolved is not None:
        audit.insert_prepared(conn, row)
    return resolved


def insert_with_history(conn: Connection, values: dict[str, Any],
                        history_values: dict[str, Any]) -> CheckpointRow | None:
    """insert_if_absent, with the checkpoint's first history row (its chain starts here): one statement on
    PostgreSQL, two on SQLite."""
    row = audit.prepare(values["id"], history_values, None)
    values = {**values, "head_hash": row["hash"]}
    if conn.dialect.name == "postgresql" and one_trip.can_open(values):  # one statement (one_trip.py)
        return one_trip.open_checkpoint(conn, values, row)
    created = insert_if_absent(conn, values)
    if created is not None:
        audit.insert_prepared(conn, row)
    return created


def mark_published(conn: Connection, checkpoint_id: str) -> None:
    conn.execute(update(checkpoints).where(c.id == checkpoint_id).values(published=True))


def due(conn: Connection, now: float, limit: int = 200) -> list[str]:
    q = select(c.id).where(c.status == OPEN, c.deadline <= now).order_by(c.deadline).limit(limit)
    return [r.id for r in conn.execute(q)]


def unpublished(conn: Connection, before: float, limit: int = 200) -> list[CheckpointRow]:
    q = select(checkpoints).where(c.published.is_(False), c.resolved_at <= before).limit(limit)
    return as_rows(conn.execute(q))


def listing(conn: Connection, *, apps: Collection[str] | None = None, status: str | None = None,
            app: str | None = None, run_id: str | None = None, node_id: str | None = None, limit: int = 50,
            offset: int = 0) -> tuple[list[CheckpointRow], int]:
    """A page of checkpoints in `apps` (None: every app), and how many match in all."""
    cond = [_in_apps(apps)]
    if status:
        cond.append(c.status == status)
    if app:
        cond.append(c.app == app)
    if node_id:
        cond.append(c.node_id == node_id)
    if run_id:
        cond.append(c.workflow_run_id == run_id)
    where = and_(*cond)
    order = c.deadline.asc() if status == OPEN else c.created_at.desc()
    rows = as_rows(conn.execute(select(checkpoints).where(where).order_by(order, c.id).limit(limit).offset(offset)))
    total = conn.execute(select(func.count()).select_from(checkpoints).where(where)).scalar_one()
    return rows, total


def by_id_prefix(conn: Connection, prefix: str, *, apps: Collection[str] | None = None,
                 limit: int = 10) -> tuple[list[CheckpointRow], int]:
    """Checkpoints in `apps` whose id starts with `prefix` (what `hitl show 3f2a9c` means), and how many.

    The range on the primary key lets every store use its index; the LIKE after it (wildcards
    escaped: `_` is an id character) keeps only true prefixes under any collation."""
    if not prefix:
        return [], 0
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    where = and_(_in_apps(apps), c.id >= prefix, c.id < upper, c.id.startswith(prefix, autoescape=True))
    rows = as_rows(conn.execute(select(checkpoints).where(where).order_by(c.id).limit(limit)))
    total = conn.execute(select(func.count()).select_from(checkpoints).where(where)).scalar_one()
    return rows, total


# ---------------------------------------------------------------------- the console's inbox
def _like(text: str) -> str:
    """`%text%` for LIKE, with LIKE's own wildcards in `text` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _contains(column, text: str):
    return func.lower(column).like(_like(text.lower()), escape="\\")


def _json_contains(column, text: str):
    """Text inside a JSON column, as it is stored: json.dumps escapes quotes and non-ASCII characters."""
    escaped = json.dumps(text.lower())[1:-1]
    return func.lower(cast(column, Text)).like(_like(escaped), escape="\\")


def inbox_where(*, apps: Collection[str] | None, statuses: Collection[str] | None = None, app: str | None = None,
                workflow_id: str | None = None, node_id: str | None = None,
                assignees: Collection[str] | None = None, created_before: float | None = None,
                created_after: float | None = None, search: str | None = None):
    """The console inbox's filters as one WHERE clause: every filter is applied by the database, so a
    page and its total are honest however many rows match. `assignees`: any of these names or
    `group:<name>` tokens is among the checkpoint's assignees."""
    cond = [_in_apps(apps)]
    if statuses:
        cond.append(c.status.in_(sorted(statuses)))
    if app:
        cond.append(c.app == app)
    if workflow_id:
        cond.append(c.workflow_id == workflow_id)
    if node_id:
        cond.append(c.node_id == node_id)
    if assignees is not None:
        # assignees is a JSON list of strings: a quoted name matches a whole element, never a part of one.
        tokens = [json.dumps(a) for a in assignees]
        cond.append(or_(*[cast(c.assignees, Text).like(_like(t), escape="\\") for t in tokens]) if tokens
                    else false())
    if created_before is not None:
        cond.append(c.created_at <= created_before)
    if created_after is not None:
        cond.append(c.created_at > created_after)
    if search:
        term = search.strip()
        cond.append(or_(c.id.startswith(term.lower(), autoescape=True), _contains(c.workflow_run_id, term),
                        _contains(c.node_id, term), _contains(c.message, term), _contains(c.decided_by, term),
                        _contains(c.feedback, term), _json_contains(c.node_output, term)))
    return and_(*cond)


def inbox_page(conn: Connection, where, *, newest_decided_first: bool, limit: int,
               offset: int) -> tuple[list[CheckpointRow], int]:
    """A page of checkpoints matching `where` (see inbox_where), and how many match in all. Open ones
    come nearest deadline first; decided ones the latest decision first."""
    order = ([func.coalesce(c.resolved_at, c.updated_at).desc(), c.id] if newest_decided_first
             else [c.deadline.asc(), c.id])
    rows = as_rows(conn.execute(select(checkpoints).where(where).order_by(*order).limit(limit).offset(offset)))
    total = conn.execute(select(func.count()).select_from(checkpoints).where(where)).scalar_one()
    return rows, total


def inbox_options(conn: Connection, apps: Collection[str] | None,
                  statuses: Collection[str] | None) -> dict[str, list[str]]:
    """The apps, workflows and nodes that the inbox's filter menus offer (within `apps`)."""
    where = inbox_where(apps=apps, statuses=statuses)
    out = {}
    for key, column in (("app", c.app), ("workflow", c.workflow_id), ("node", c.node_id)):
        q = select(column).where(where, column.is_not(None)).distinct().order_by(column).limit(500)
        out[key] = [v for v in conn.execute(q).scalars()]
    return out


def count_open(conn: Connection, apps: Collection[str] | None = None) -> int:
    q = select(func.count()).select_from(checkpoints).where(c.status == OPEN, _in_apps(apps))
    return conn.execute(q).scalar_one()


# ---------------------------------------------------------------------- history
def append_history(conn: Connection, checkpoint_id: str, kind: str, *, actor: str | None = None,
                   channel: str | None = None, action: str | None = None, outcome: str | None = None,
                   code: str | None = None, message_id: str | None = None, idempotency_key: str | None = None,
                   detail: dict[str, Any] | None = None, at: float | None = None) -> str:
    """Append to the checkpoint's hash-chained history (shared/store/audit.py); returns the new head."""
    return audit.append(conn, checkpoint_id, dict(
        at=time.time() if at is None else at, kind=kind, actor=actor, channel=channel, action=action,
        outcome=outcome, code=code, message_id=message_id, idempotency_key=idempotency_key, detail=detail))


def history_of(conn: Connection, checkpoint_id: str) -> list[HistoryRow]:
    q = select(history).where(history.c.checkpoint_id == checkpoint_id).order_by(history.c.id)
    return as_rows(conn.execute(q))


def earlier_attempt(conn: Connection, checkpoint_id: str, message_id: str | None,
                    idempotency_key: str | None) -> HistoryRow | None:
    """The recorded outcome of this same decision (same message id or idempotency key), if any."""
    if not message_id and not idempotency_key:
        return None
    # A NULL parameter never equals anything, so a missing id or key simply does not match.
    params = {"b_id": checkpoint_id, "b_message": message_id, "b_key": idempotency_key}
    return _FIRST_DECISION_BY_MESSAGE.first(conn, params)


def winning_decision(conn: Connection, checkpoint_id: str) -> HistoryRow | None:
    return _WINNING.first(conn, {"b_id": checkpoint_id})


def decision_by_message(conn: Connection, message_id: str) -> HistoryRow | None:
    """What became of a decision message (GET /v1/decisions/{id}): its history row, if handled."""
    q = (select(history).where(history.c.message_id == message_id, history.c.kind == "decision")
         .order_by(history.c.id).limit(1))
    return as_row(conn.execute(q).first())


def lock(conn: Connection, checkpoint_id: str) -> CheckpointRow | None:
    """The checkpoint, read with a row lock (PostgreSQL) for the rest of the transaction: votes of a
    quorum arriving at once are counted one after the other. SQLite's write transactions are serial."""
    return as_row(conn.execute(select(checkpoints).where(c.id == checkpoint_id).with_for_update()).first())


def update_open(conn: Connection, checkpoint_id: str, now: float, **values: Any) -> CheckpointRow | None:
    """Change fields of an open checkpoint (tally, assignees, claim); None if it is no longer open."""
    result = conn.execute(update(checkpoints).where(c.id == checkpoint_id, c.status == OPEN)
                          .values(**values, updated_at=now).returning(*checkpoints.c))
    return as_row(result.first())
