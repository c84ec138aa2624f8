"""What every source of run news shares when it writes the store: a status change (its history row,
events, the cancel of a failed run's checkpoints, the capture of a paused run's form), and which
runs the logs listing watches.

Plain sync functions on an open connection; they return (append) the messages to publish once the
transaction committed, like the decider's logic.
"""
from __future__ import annotations

import time
from typing import Any

from services.poller import metrics
from shared.broker import Outbound
from shared.models import FormReport, RunEnded, RunStatusEvent
from shared.settings import Settings
from shared.store import Database, checkpoints
from shared.store import runs as store
from shared.store.rows import RunRow
from shared.topology import FORM_REPORT, RUN_ENDED
from shared.views import public_run

TERMINAL = store.RUN_TERMINAL
CANCELS_CHECKPOINTS = {"failed", "stopped"}


class RunBook:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.names = settings.names

    # ------------------------------------------------------------------ which runs the listing watches
    @property
    def listing(self) -> bool:
        return self.settings.status_source == "listing"

    def listed(self, run: RunRow | dict[str, Any], now: float) -> bool:
        """The logs listing shows this run's status: polls one by one are needed only for its outputs
        once it ended, or right after a form submit (`direct_until`)."""
        created = run.get("created_at")
        return (self.listing and created is not None and not run.get("unlisted")
                and float(created) >= now - self.settings.listing_lookback_s)

    # ------------------------------------------------------------------ status changes
    def status_changed(self, conn, app: str, run_id: str, status: str, out: list[Outbound],
                       previous: str | None = None, run: RunRow | None = None, history: bool = True,
                       new: bool = False) -> None:
        """The consequences of a run's new status. `run`: the row as now stored, when the caller has it;
        `history=False`: the caller appends the history row (many at once); `new`: a run we had never
        seen, which can have no checkpoint of ours to cancel."""
        run = run or store.get(conn, app, run_id)
        assert run is not None
        if previous == "paused":
            store.update_run(conn, app, run_id, capture=None, capture_detail=None, capture_due_at=None)
        # A submitted form counts as resumed on evidence only: the run ending (here), or its stream showing
        # the Human Input node filled (events.py). A record that merely reads `running` is no proof: a stop
        # requested while the run was paused leaves it `running` forever after the submit (fixture 11).
        ended_after_resume = status in TERMINAL and previous != "paused" and not new
        if (previous == "paused" and status != "running") or (
                ended_after_resume and checkpoints.awaits_resume(conn, app, run_id)):
            out.append(self.form_report(app, run_id, "run_resumed", run_status=status))
        if status == "paused":
            self._paused(conn, run)
        if history:
            store.append_history(conn, app, run_id, "status", status=status)
        out.append(Outbound(self.names.events, f"run.status.{status}",
                            RunStatusEvent(type=f"run.status.{status}", run=public_run(run)).to_bytes()))
        if status in CANCELS_CHECKPOINTS and not new:
            out.append(Outbound(self.names.commands, RUN_ENDED,
                                RunEnded(app=app, workflow_run_id=run_id, status=status).to_bytes()))

    def _paused(self, conn, run: RunRow) -> None:
        """A run paused: unless its form came with the news (a stream, a blocking answer), capture it by
        a re-attach with the run's own user — or say why that cannot be done."""
        if run["capture"] == "captured":
            return
        started_by = run["started_by"] or ""
        if started_by.startswith("account"):
            who = started_by.partition(":")[2] or "a console account"
            metrics.form_captures.labels(app=run["app"], outcome="unavailable").inc()
            self.capture_state(conn, run, "unavailable",
                               f"started by the console account {who}: Dify re-attaches a run's stream only for the "
                               "end user who started it, so its form cannot reach the inbox; decide it in Dify")
            return
        store.update_run(conn, run["app"], run["id"], capture_due_at=time.time() + self.settings.capture_grace_s)

    def capture_state(self, conn, run: RunRow, state: str, detail: str | None) -> None:
        """Record where the capture of a paused run's form stands; the history gets one row per change."""
        due = None if state in ("captured", "unavailable") else run["capture_due_at"]
        store.update_run(conn, run["app"], run["id"], capture=state, capture_detail=detail, capture_due_at=due)
        if (run["capture"], run["capture_detail"]) != (state, detail):
            store.append_history(conn, run["app"], run["id"], f"capture_{state}", status=run["status"],
                                 detail={"reason": detail} if detail else None)

    def form_report(self, app: str, run_id: str, outcome: str, **fields: Any) -> Outbound:
        return Outbound(self.names.commands, FORM_REPORT,
                        FormReport(app=app, workflow_run_id=run_id, outcome=outcome, **fields).to_bytes())

    @staticmethod
    def user_of(run: RunRow | dict[str, Any], inputs: dict[str, Any] | None = None) -> str | None:
        """The end user a run was started with: known from the start, else Dify's `sys.user_id` input."""
        if run.get("user"):
            return run["user"]
        found = (inputs or run.get("inputs") or {}).get("sys.user_id")
        return found if isinstance(found, str) and found else None
