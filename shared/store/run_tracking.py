"""The poller's schedules beyond one-by-one polls, as rows: which live runs the logs listing covers, the
lease on an app's listing sweep, paused runs whose form is still to be captured, and runs whose live
stream lost its reader. Each claim is a conditional UPDATE, so two pollers never do the same work
in the same interval (the lease rules of runs.claim_due, applied to these schedules)."""
from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.rows import RunRow, as_row, as_rows
from shared.store.runs import _insert
from shared.store.tables import checkpoints, discovery_watermarks, run_history, runs
from shared.views import RUN_TERMINAL

r = runs.c
w = discovery_watermarks.c
# Not live: it ended, or Dify no longer knows it.
NOT_LIVE = tuple(sorted(RUN_TERMINAL | {"not_found"}))
CHUNK = 500  # ids per IN (...) list


def _live():
    return r.status.notin_(NOT_LIVE)


# ---------------------------------------------------------------------- the logs listing
def live_for_listing(conn: Connection, app: str, since: float) -> list[tuple[float, str]]:
    """(created_at, id) of the app's live runs the listing can show, oldest first."""
    q = (select(r.created_at, r.id).where(r.app == app, _live(), r.created_at.is_not(None), r.created_at >= since,
                                          r.unlisted.is_(False))
         .order_by(r.created_at, r.id))
    return [(float(c), i) for c, i in conn.execute(q)]


def unlist_older(conn: Connection, app: str, since: float, now: float) -> int:
    """Live runs created before `since` leave the listing: they are polled one by one from now on."""
    result = conn.execute(update(runs).where(r.app == app, _live(), r.created_at < since, r.unlisted.is_(False))
                          .values(unlisted=True, next_poll_at=now, poll_interval=1.0, updated_at=now))
    return result.rowcount or 0


def unlist(conn: Connection, app: str, ids: Collection[str], now: float) -> None:
    """The listing did not show these runs where it should have: poll them one by one, now."""
    for chunk in _chunks(sorted(ids)):
        conn.execute(update(runs).where(r.app == app, r.id.in_(chunk), _live())
                     .values(unlisted=True, next_poll_at=now, poll_interval=1.0, updated_at=now))


def poll_now(conn: Connection, app: str, ids: Collection[str], now: float) -> None:
    """One direct poll of each, now (a window whose listing would cost more than polling them)."""
    for chunk in _chunks(sorted(ids)):
        conn.execute(update(runs).where(r.app == app, r.id.in_(chunk), _live(),
                                        or_(r.next_poll_at.is_(None), r.next_poll_at > now))
                     .values(next_poll_at=now, updated_at=now))


def states_of(conn: Connection, app: str, ids: Collection[str]) -> dict[str, RunRow]:
    """The runs among `ids` that are tracked, by id (one query per page of the listing)."""
    found: dict[str, RunRow] = {}
    for chunk in _chunks(sorted(ids)):
        for row in as_rows(conn.execute(select(runs).where(r.app == app, r.id.in_(chunk)))):
            found[row["id"]] = row
    return found


def claim_sweep(conn: Connection, app: str, owner: str, now: float, lease_s: float) -> bool:
    """The lease on walking this app's listing: one poller at a time (renewed by its holder)."""
    if _insert(conn, discovery_watermarks, dict(app=app, created_at=0.0, updated_at=now, sweep_owner=owner,
                                                sweep_until=now + lease_s), ["app"]):
        return True
    free = or_(w.sweep_until.is_(None), w.sweep_until < now, w.sweep_owner == owner)
    result = conn.execute(update(discovery_watermarks).where(w.app == app, free)
                          .values(sweep_owner=owner, sweep_until=now + lease_s).returning(w.app))
    return result.first() is not None


def release_sweep(conn: Connection, app: str, owner: str) -> None:
    conn.execute(update(discovery_watermarks).where(w.app == app, w.sweep_owner == owner)
                 .values(sweep_owner=None, sweep_until=None))


def watermark(conn: Connection, app: str) -> float | None:
    """Newest log row seen (0 for an app whose sweep lease exists but nothing was seen yet: None)."""
    value = conn.execute(select(w.created_at).where(w.app == app)).scalar()
    return float(value) if value else None


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[RunRow]:
    """Track many runs in one statement (a page of the listing); the rows created (others existed)."""
    if not rows:
        return []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    columns = {k for row in rows for k in row}
    full = [{k: row.get(k) for k in columns} for row in rows]
    stmt = dialect.insert(runs).values(full).on_conflict_do_nothing(index_elements=["app", "id"]).returning(*runs.c)
    return as_rows(conn.execute(stmt))


def change_status(conn: Connection, app: str, run_id: str, status: str, **values: Any) -> RunRow | None:
    """runs.set_status that hands back the changed row (no second read for the event)."""
    result = conn.execute(
        update(runs).where(r.app == app, r.id == run_id, r.status != status, r.status.notin_(RUN_TERMINAL))
        .values(status=status, updated_at=time.time(), **values).returning(*runs.c))
    return as_row(result.first())


def append_histories(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Many run-history rows in one round trip."""
    if rows:
        conn.execute(run_history.insert(), [{"status": None, "node_id": None, "detail": None, **row} for row in rows])


# ---------------------------------------------------------------------- captures and lost streams
def claim_captures(conn: Connection, now: float, retry_s: float, apps: Collection[str], limit: int) -> list[RunRow]:
    """Paused runs whose form is due to be captured; each claimed until `now + retry_s` (one re-attach
    per paused run per interval, whichever poller takes it)."""
    candidates = conn.execute(select(r.app, r.id).where(r.capture_due_at <= now, r.app.in_(sorted(apps)))
                              .order_by(r.capture_due_at).limit(limit)).all()
    claimed = []
    for app, run_id in candidates:
        row = conn.execute(update(runs).where(r.app == app, r.id == run_id, r.capture_due_at <= now)
                           .values(capture_due_at=now + retry_s).returning(*runs.c)).first()
        if row is not None:
            claimed.append(as_row(row))
    return claimed


def claim_lost_streams(conn: Connection, now: float, lost_after_s: float, max_reattaches: int,
                       apps: Collection[str], limit: int) -> list[RunRow]:
    """Streamed runs still running whose stream shows no sign of a reader for `lost_after_s` (the
    process reading it died): claimed for one re-attach, which counts as a sign of life."""
    quiet = func.coalesce(r.stream_alive_at, r.last_event_at, r.tracked_at) < now - lost_after_s
    cond = and_(r.streamed.is_(True), r.status == "running", quiet, r.reattach_count < max_reattaches,
                r.app.in_(sorted(apps)))
    candidates = conn.execute(select(r.app, r.id).where(cond).limit(limit)).all()
    claimed = []
    for app, run_id in candidates:
        row = conn.execute(update(runs).where(r.app == app, r.id == run_id, cond)
                           .values(stream_alive_at=now, reattached_at=now, reattach_count=r.reattach_count + 1)
                           .returning(*runs.c)).first()
        if row is not None:
            claimed.append(as_row(row))
    return claimed


def streams_alive(conn: Connection, app: str, ids: Collection[str], now: float) -> None:
    for chunk in _chunks(sorted(ids)):
        conn.execute(update(runs).where(r.app == app, r.id.in_(chunk)).values(stream_alive_at=now))


# ---------------------------------------------------------------------- what readers show
def checkpoints_of_runs(conn: Connection,
                        keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The checkpoints of each (app, run id), for the outcome shown beside a run's status."""
    c = checkpoints.c
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(set(keys))):
        q = (select(c.app, c.workflow_run_id, c.kind, c.node_id, c.round, c.status, c.action, c.decided_by,
                    c.reason, c.on_timeout, c.created_at, c.resolved_at, c.output)
             .where(tuple_(c.app, c.workflow_run_id).in_(chunk)).order_by(c.created_at))
        for row in as_rows(conn.execute(q)):
            found.setdefault((row["app"], row["workflow_run_id"]), []).append(row)
    return found


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]
