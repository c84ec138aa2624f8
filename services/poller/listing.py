"""Run news from the logs listing (GET /v1/workflows/logs): a page of up to 100 rows, each with a run's
current status (running and paused included, DIFY.md). New runs are tracked (discovery); a tracked
live run whose status changed is updated at once from its row — status, error, times, steps — and
polled once by id for its outputs, which the row lacks. A page where nothing changed costs one read.

The plan of a pass (which time windows hold live runs) is made here too; sweep.py walks it.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.poller.runbook import TERMINAL, RunBook
from shared.broker import Outbound
from shared.dify.models import LogEntry
from shared.store import run_tracking
from shared.store import runs as store
from shared.store.rows import RunRow

# Dify's created_at has 1 s resolution, and a logs row may be stamped a second after its run (fixture
# 18): every time bound is widened by this much.
MARGIN_S = 5


@dataclass
class Window:
    """A closed range of creation times holding some live runs: walked page by page."""

    after: float
    before: float
    ids: set[str] = field(default_factory=set)


def plan_windows(live: Iterable[tuple[float, str]], max_runs: int, max_span_s: float) -> list[Window]:
    """Cut the live runs (oldest first) into windows of at most `max_runs` runs and `max_span_s` seconds,
    so that each walk is a few pages and a window with nothing live is never walked."""
    windows: list[Window] = []
    current: Window | None = None
    first = 0.0
    for created, run_id in live:
        if current is None or len(current.ids) >= max_runs or created - first > max_span_s:
            current = Window(after=created - MARGIN_S, before=created + MARGIN_S)
            first = created
            windows.append(current)
        current.ids.add(run_id)
        current.before = created + MARGIN_S
    return windows


def started_by(entry: LogEntry) -> str | None:
    if entry.created_by_end_user is not None:
        return "end_user"
    account = entry.created_by_account or {}
    if entry.created_by_role == "account" or account:
        return f"account:{account.get('email') or account.get('id') or '?'}"
    return None


class ListingBook(RunBook):
    def on_listed(self, app: str, entries: list[LogEntry]) -> tuple[list[Outbound], int]:
        """Apply one page of the listing; returns the messages and how many runs it changed or added."""
        if not entries:
            return [], 0
        with self.db.read() as conn:
            known = run_tracking.states_of(conn, app, [e.workflow_run.id for e in entries])
        todo = [e for e in entries if self._news(known.get(e.workflow_run.id), e)]
        if not todo:
            return [], 0
        out: list[Outbound] = []
        now = time.time()
        with self.db.write() as conn:
            self._discovered(conn, app, [e for e in todo if e.workflow_run.id not in known], now, out)
            history: list[dict[str, Any]] = []
            for entry in todo:
                run = known.get(entry.workflow_run.id)
                if run is not None:
                    self._changed(conn, run, entry, now, out, history)
            run_tracking.append_histories(conn, history)
        return out, len(todo)

    def on_discovered(self, app: str, entry: LogEntry) -> list[Outbound]:
        return self.on_listed(app, [entry])[0]

    @staticmethod
    def _news(run: RunRow | None, entry: LogEntry) -> bool:
        if run is None:
            return True
        if run["status"] in TERMINAL or run["status"] == "not_found":
            return False  # ours is final (a stop seen on the stream wins over a record that says running)
        return (entry.workflow_run.status != run["status"] or run["created_at"] is None
                or (run["started_by"] is None and started_by(entry) is not None))

    def _discovered(self, conn, app: str, entries: list[LogEntry], now: float, out: list[Outbound]) -> None:
        """New runs, tracked in one statement (a page may hold 100): a run started elsewhere is known
        from its row — status, creation time, its user — and watched through the listing from now on."""
        rows = []
        for entry in {e.workflow_run.id: e for e in entries}.values():
            wr = entry.workflow_run
            terminal = wr.status in TERMINAL
            session = entry.created_by_end_user.session_id if entry.created_by_end_user else None
            values: dict[str, Any] = dict(id=wr.id, app=app, source="logs", status=wr.status, created_at=wr.created_at,
                                          user=session, started_by=started_by(entry), stale_record=False,
                                          streamed=False, poll_failures=0, tracked_at=now, updated_at=now,
                                          poll_interval=1.0, reattach_count=0, unlisted=False)
            values["next_poll_at"] = None if terminal or self.listed(values, now) else now  # per_run: poll by id
            if terminal:
                values.update(dify_status=wr.status, **self._row_fields(entry))
            rows.append(values)
        created = run_tracking.insert_new(conn, rows)
        history: list[dict[str, Any]] = []
        for run in created:
            detail: dict[str, Any] = {"source": "logs"}
            if (run["started_by"] or "").startswith("account"):
                detail["started_by"] = run["started_by"]
            history += [dict(app=app, run_id=run["id"], at=now, kind="tracked", detail=detail),
                        dict(app=app, run_id=run["id"], at=now, kind="status", status=run["status"])]
        run_tracking.append_histories(conn, history)
        for run in created:
            self.status_changed(conn, app, run["id"], run["status"], out, run=run, history=False, new=True)

    def _changed(self, conn, run: RunRow, entry: LogEntry, now: float, out: list[Outbound],
                 history: list[dict[str, Any]]) -> None:
        wr = entry.workflow_run
        app, run_id = run["app"], run["id"]
        fill: dict[str, Any] = {}
        if run["created_at"] is None:
            fill["created_at"] = wr.created_at
        if run["started_by"] is None and started_by(entry):
            fill["started_by"] = started_by(entry)
            if not run["user"] and entry.created_by_end_user and entry.created_by_end_user.session_id:
                fill["user"] = entry.created_by_end_user.session_id
        if fill:
            store.update_run(conn, app, run_id, **fill)
        if wr.status == run["status"]:
            return
        fields: dict[str, Any] = self._row_fields(entry) if wr.status in TERMINAL else {}
        if wr.status in TERMINAL:  # its outputs are not in the row: one poll by id fetches them
            fields.update(next_poll_at=now, poll_interval=self.settings.poll_min_interval_s)
        changed = run_tracking.change_status(conn, app, run_id, wr.status, dify_status=wr.status, **fields)
        if changed is not None:
            history.append(dict(app=app, run_id=run_id, at=now, kind="status", status=wr.status))
            self.status_changed(conn, app, run_id, wr.status, out, run["status"], run=changed, history=False)

    @staticmethod
    def _row_fields(entry: LogEntry) -> dict[str, Any]:
        wr = entry.workflow_run
        return dict(error=wr.error, elapsed_time=wr.elapsed_time, total_steps=wr.total_steps,
                    exceptions_count=wr.exceptions_count, finished_at=wr.finished_at)

    # ------------------------------------------------------------------ the plan of a pass
    def plan(self, app: str, settle_before: float) -> list[Window]:
        """The windows of live runs created before `settle_before` (newer ones are in the head of the
        listing, walked every pass); runs older than the listing lookback leave it for polls by id."""
        now = time.time()
        since = now - self.settings.listing_lookback_s
        with self.db.write() as conn:
            run_tracking.unlist_older(conn, app, since, now)
        with self.db.read() as conn:
            live = [(c, i) for c, i in run_tracking.live_for_listing(conn, app, since) if c < settle_before]
        return plan_windows(live, self.settings.sweep_window_runs, self.settings.sweep_window_s)

    def unseen(self, app: str, ids: set[str]) -> None:
        """Live runs a closed window's walk did not show: polled one by one from now on."""
        if ids:
            with self.db.write() as conn:
                run_tracking.unlist(conn, app, ids, time.time())

    def poll_by_id(self, app: str, ids: set[str]) -> None:
        if ids:
            with self.db.write() as conn:
                run_tracking.poll_now(conn, app, ids, time.time())

    def claim_sweep(self, app: str, owner: str) -> bool:
        with self.db.write() as conn:
            return run_tracking.claim_sweep(conn, app, owner, time.time(), self.settings.sweep_lease_s)

    def release_sweep(self, app: str, owner: str) -> None:
        with self.db.write() as conn:
            run_tracking.release_sweep(conn, app, owner)

    def watermark(self, app: str) -> float | None:
        with self.db.read() as conn:
            return run_tracking.watermark(conn, app)

    def set_watermark(self, app: str, created_at: float) -> None:
        with self.db.write() as conn:
            store.set_watermark(conn, app, created_at)
