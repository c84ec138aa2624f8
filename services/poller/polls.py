"""Run news from one-by-one polls (GET /v1/workflows/run/{id}) of leased runs, and their schedule.

Who is polled one by one: a run whose creation time is still unknown (tracked from a checkpoint or by
id), a run the logs listing cannot show (older than HITL_LISTING_LOOKBACK_S, another app's key,
cleaned up), a run that just ended (its outputs: the listing has none), and a run right after a form
submit (`direct_until`: is it leaving `paused`?). Every other live run is watched through the
listing (listing.py), so the number of these polls follows the changes, not the number of live runs.
"""
from __future__ import annotations

import random
import time
from typing import Any

from services.poller.runbook import TERMINAL, RunBook
from shared.broker import Outbound
from shared.dify.models import RunRecord
from shared.store import runs as store
from shared.store.rows import RunRow


class PollBook(RunBook):
    def on_poll(self, run: RunRow, record: RunRecord, owner: str) -> list[Outbound]:
        """Apply GET /v1/workflows/run/{id} to a leased run and schedule its next poll."""
        out: list[Outbound] = []
        status = record.status
        now = time.time()
        app, run_id = run["app"], run["id"]
        with self.db.write() as conn:
            values: dict[str, Any] = dict(dify_status=status, poll_failures=0)
            learned = self._learned(run, record)
            values.update(learned)
            if run["status"] == "stopped" and status not in TERMINAL:
                # We saw the stop on the stream; Dify's record says otherwise and will keep doing so.
                values.update(stale_record=True, next_poll_at=None)
                if not run["stale_record"]:
                    store.append_history(conn, app, run_id, "stale_record", status=status,
                                         detail={"ours": run["status"], "dify": status})
            elif run["status"] in TERMINAL:
                # Ended (on a stream or in the listing): wait, backing off, until Dify's record has caught up;
                # then it holds the outputs the listing does not show.
                interval = min((run["poll_interval"] or 1) * 2, self.settings.poll_max_interval_s)
                values.update(poll_interval=interval, next_poll_at=None if status in TERMINAL else now + interval)
                if status in TERMINAL:
                    values.update({k: v for k, v in self._record_fields(record).items()
                                   if v is not None and run.get(k) is None})
            elif status != run["status"]:
                fields = dict(self._record_fields(record), inputs=run["inputs"] or record.inputs,
                              created_at=run["created_at"] or record.created_at)
                if store.set_status(conn, app, run_id, status, **fields):
                    self.status_changed(conn, app, run_id, status, out, run["status"])
                values.update(poll_interval=self.settings.poll_min_interval_s,
                              next_poll_at=None if status in TERMINAL else
                              self._next(run, learned, now, self.settings.poll_min_interval_s))
            else:
                interval = min((run["poll_interval"] or 1) * 2, self.settings.poll_max_interval_s)
                values.update(poll_interval=interval, next_poll_at=self._next(run, learned, now, interval))
            store.release(conn, app, run_id, owner, **values)
        return out

    @staticmethod
    def _record_fields(record: RunRecord) -> dict[str, Any]:
        return dict(outputs=record.outputs or None, error=record.error, elapsed_time=record.elapsed_time,
                    total_steps=record.total_steps, finished_at=record.finished_at)

    def _learned(self, run: RunRow, record: RunRecord) -> dict[str, Any]:
        """What the record tells about a run we tracked by id only: when it was created (so the
        listing can watch it from now on) and who started it (a form is captured with that user)."""
        learned: dict[str, Any] = {}
        if run["created_at"] is None and record.created_at is not None:
            learned["created_at"] = record.created_at
        if not run["user"] and self.user_of(run, record.inputs):
            learned["user"] = self.user_of(run, record.inputs)
        return learned

    def _next(self, run: RunRow, learned: dict[str, Any], now: float, interval: float) -> float | None:
        """When to poll a live run again: a listed run is left to the listing, unless direct polls
        were asked for until a moment still to come."""
        if self.listed({**run, **learned}, now) and not (run["direct_until"] and run["direct_until"] > now):
            return None
        return now + interval

    def on_poll_error(self, run: RunRow, error: Exception, owner: str, gone: bool = False) -> None:
        """Dify did not answer usefully: back off (capped, jittered) and keep the run; nothing is lost."""
        failures = (run["poll_failures"] or 0) + 1
        delay = min(self.settings.poll_max_interval_s * 2, 2 ** min(failures, 6)) * (0.5 + random.random() / 2)
        app, run_id = run["app"], run["id"]
        with self.db.write() as conn:
            if gone and failures >= 5:
                store.set_status(conn, app, run_id, "not_found")
                store.append_history(conn, app, run_id, "status", status="not_found",
                                     detail={"error": str(error)[:300]})
                store.release(conn, app, run_id, owner, poll_failures=failures, next_poll_at=None)
                return
            store.release(conn, app, run_id, owner, poll_failures=failures, next_poll_at=time.time() + delay)

    def poll_soon(self, app: str, run_id: str) -> None:
        """After a form submit: look at the run again right away (is it leaving `paused`?), and keep
        looking one by one while the resume is being verified, whatever the listing does."""
        now = time.time()
        with self.db.write() as conn:
            store.update_run(conn, app, run_id, next_poll_at=now + 0.5, poll_interval=self.settings.poll_min_interval_s,
                             direct_until=now + self.settings.resume_timeout_s)

    def run_user(self, app: str, run_id: str) -> str | None:
        with self.db.read() as conn:
            run = store.get(conn, app, run_id)
        return self.user_of(run) if run else None

    def continuation_exists(self, checkpoint_id: str) -> bool:
        with self.db.read() as conn:
            return store.continuation_for(conn, checkpoint_id) is not None

    def due(self, owner: str, limit: int) -> list[RunRow]:
        with self.db.write() as conn:
            return store.claim_due(conn, owner, time.time(), self.settings.poll_lease_s, limit)
