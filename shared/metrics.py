"""Prometheus metrics, named by the thing measured (`hitl_<noun>_<unit>`), labelled by app / node /
queue / outcome only — never by run, checkpoint or message id (unbounded label values)."""
from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

DECISION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

checkpoints_opened = Counter("hitl_checkpoints_opened_total", "Checkpoints opened", ["app"])
checkpoints_resolved = Counter("hitl_checkpoints_resolved_total", "Checkpoints closed, by action and reason",
                               ["app", "action", "reason"])
deadline_expiries = Counter("hitl_deadline_expiries_total", "Checkpoints closed by their deadline", ["app"])
decisions_rejected = Counter("hitl_decisions_rejected_total", "Decisions refused, by reason", ["reason"])
time_to_decision = Histogram("hitl_time_to_decision_seconds", "From checkpoint opened to resolved",
                             ["app", "node"], buckets=DECISION_BUCKETS)
held_calls = Gauge("hitl_held_calls", "Dify HTTP calls held open by this ingest process")
hold_reattaches = Counter("hitl_hold_reattaches_total", "Dify calls that re-attached to an open checkpoint")
hold_windows_ended = Counter("hitl_hold_windows_ended_total", "Held calls answered 503 at the end of their window")
messages_handled = Counter("hitl_messages_handled_total", "Deliveries handled, by queue and outcome",
                           ["queue", "outcome"])
publish_confirm = Histogram("hitl_publish_confirm_seconds", "Publish until the broker's confirm",
                            buckets=FAST_BUCKETS)
http_errors = Counter("hitl_http_errors_total", "Error answers of the HTTP API, by code", ["code"])

# ---------------------------------------------------------------------- broker deliveries (shared/broker/dispatch.py)
# `queue` is a topology queue name; a process-private queue (ingest's reply queue) is labelled "private".
messages_consumed = Counter("hitl_messages_consumed_total", "Deliveries handed to a handler, by queue", ["queue"])
messages_settled = Counter("hitl_messages_settled_total",
                           "How deliveries were settled: acked | retried | rejected | failed | gave_up | unsettled",
                           ["queue", "outcome"])
messages_dead_lettered = Counter("hitl_messages_dead_lettered_total", "Deliveries sent to their queue's DLQ", ["queue"])
message_handling = Histogram("hitl_message_handling_seconds", "Handler run time of one delivery", ["queue"],
                             buckets=FAST_BUCKETS + (10, 30))
# ---------------------------------------------------------------------- store traffic (shared/store/counting.py)
# What `make bench` divides by the cycles it ran. A round trip is one wait for the database: on
# PostgreSQL every statement, the BEGIN psycopg sends before a transaction's first one, and COMMIT /
# ROLLBACK; on SQLite (a library call, no network) the same calls, counted alike.
store_statements = Counter("hitl_store_statements_total", "SQL statements executed")
store_transactions = Counter("hitl_store_transactions_total", "Store transactions ended, by outcome", ["outcome"])
store_round_trips = Counter("hitl_store_round_trips_total", "Waits for the database (statements, BEGIN, COMMIT)")
# Group commit of store handlers (shared/broker/batches.py): transactions shared by deliveries and the
# deliveries in them (their ratio: deliveries per transaction), and batches that could not commit
# together and ran each delivery alone.
store_batches = Counter("hitl_store_batches_total", "Store transactions run for a batch of deliveries")
store_batched_deliveries = Counter("hitl_store_batched_deliveries_total", "Deliveries handled in batches")
store_batches_split = Counter("hitl_store_batches_split_total",
                              "Store batches rolled back and run one delivery at a time")
# Incremented by the Dify form (Human Input) work: a submitted form whose run did not leave `paused`.
resume_stuck = Counter("hitl_resume_stuck_total",
                       "Dify form submissions whose run showed no sign of resuming (stuck or unconfirmed)", ["app"])
store_query_errors = Counter("hitl_store_query_errors_total", "Scrape-time store queries that failed")


# ---------------------------------------------------------------------- gauges read from the store at scrape time
class StoreGauges:
    """Gauges computed from the store when Prometheus scrapes (cached `ttl_s`), so that every replica
    reports the same numbers: take `max by (app)` across replicas, never `sum`. Registered at import
    (the names are known to the registry); they have samples once `observe_store(db)` bound a store."""

    def __init__(self, specs: list[tuple[str, str, list[str]]], query, ttl_s: float = 5.0) -> None:
        import threading

        self.specs, self.query, self.ttl_s = specs, query, ttl_s
        self.db = None
        self.apps: list[str] = []  # configured apps: a gauge of an app with nothing open reads 0, not "no data"
        self._cache: tuple[float, dict] = (0.0, {})
        self._lock = threading.Lock()

    def describe(self):
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in self.specs]

    def _values(self) -> dict:
        import time

        if self.db is None:
            return {}
        with self._lock:
            at, values = self._cache
            if time.monotonic() - at >= self.ttl_s:
                try:
                    with self.db.read() as conn:
                        values = self.query(conn, time.time())
                except Exception:  # the store is down: no samples (readiness says why), never a failed scrape
                    store_query_errors.inc()
                    values = {}
                self._cache = (time.monotonic(), values)
            return values

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        values = self._values()
        for name, doc, labels in self.specs:
            family = GaugeMetricFamily(name, doc, labels=labels)
            series = dict(values.get(name, {}))
            if labels == ["app"] and self.db is not None:
                for app in self.apps:
                    series.setdefault((app,), 0)
            for key, value in series.items():
                family.add_metric(list(key), value)
            yield family


def _checkpoint_gauges(conn, now: float) -> dict:
    from sqlalchemy import case, func, select

    from shared.store.tables import checkpoints as t

    rows = conn.execute(select(t.c.app, func.count(), func.min(t.c.created_at),
                               func.sum(case((t.c.deadline < now, 1), else_=0)))
                        .where(t.c.status == "open").group_by(t.c.app)).all()
    return {"hitl_open_checkpoints": {(app,): n for app, n, _, _ in rows},
            "hitl_open_checkpoint_oldest_age_seconds": {(app,): max(0.0, now - oldest) for app, _, oldest, _ in rows},
            "hitl_checkpoints_overdue": {(app,): int(late or 0) for app, _, _, late in rows}}


def _run_gauges(conn, now: float) -> dict:
    from sqlalchemy import func, select

    from shared.store.tables import runs as t

    by_status = conn.execute(select(t.c.app, t.c.status, func.count()).group_by(t.c.app, t.c.status)).all()
    lag = conn.execute(select(t.c.app, func.min(t.c.next_poll_at)).where(t.c.next_poll_at.is_not(None))
                       .group_by(t.c.app)).all()
    return {"hitl_tracked_runs": {(app, status): n for app, status, n in by_status},
            "hitl_poll_lag_seconds": {(app,): max(0.0, now - due) for app, due in lag}}


open_checkpoint_gauges = StoreGauges([
    ("hitl_open_checkpoints", "Checkpoints open now (from the store)", ["app"]),
    ("hitl_open_checkpoint_oldest_age_seconds", "Age of the oldest open checkpoint (from the store)", ["app"]),
    ("hitl_checkpoints_overdue", "Open checkpoints past their deadline, not yet expired (from the store)", ["app"]),
], _checkpoint_gauges)
run_gauges = StoreGauges([
    ("hitl_tracked_runs", "Runs the poller tracks, by our status (from the store)", ["app", "status"]),
    ("hitl_poll_lag_seconds", "How late the most overdue scheduled run poll is (from the store)", ["app"]),
], _run_gauges)
REGISTRY.register(open_checkpoint_gauges)
REGISTRY.register(run_gauges)


def observe_store(db, *, checkpoints: bool = False, runs: bool = False, apps: list[str] | None = None) -> None:
    """Give the store gauges their store (decider: checkpoints=True; poller: runs=True)."""
    if checkpoints:
        open_checkpoint_gauges.db = db
        open_checkpoint_gauges.apps = list(apps or [])
    if runs:
        run_gauges.db = db
        run_gauges.apps = list(apps or [])


# ---------------------------------------------------------------------- bounded label values
class NodeLabels:
    """Node ids as label values, bounded: the first `limit` node ids of each app seen by this process
    keep their name, later ones count as "other" (5,000 distinct node ids must not mean 65,000 series).
    Apps are bounded by configuration."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self.seen: dict[str, set[str]] = {}

    def __call__(self, app: str, node_id: str) -> str:
        nodes = self.seen.setdefault(app, set())
        if node_id in nodes:
            return node_id
        if len(nodes) < self.limit:
            nodes.add(node_id)
            return node_id
        return "other"


node_labels = NodeLabels()
store_up = Gauge("hitl_store_up", "1 while the store takes writes from this process, 0 after a failed write")
store_retries = Counter("hitl_store_retries_total", "Handler transactions run again at once because their "
                        "connection died under them (a restart, a failover)")
clock_offset = Gauge("hitl_store_clock_offset_seconds", "The store's clock minus this process's clock")
decisions_parked = Counter("hitl_decisions_parked_total", "Decisions kept until their checkpoint opens, by outcome",
                           ["outcome"])
votes = Counter("hitl_votes_total", "Votes of quorum checkpoints", ["app"])
# Votes per quorum checkpoint = hitl_votes_total / hitl_quorum_resolved_total.
quorum_resolved = Counter("hitl_quorum_resolved_total", "Quorum checkpoints resolved, by how: reached | rejected",
                          ["app", "outcome"])
time_to_first_vote = Histogram("hitl_time_to_first_vote_seconds", "From checkpoint opened to its first vote",
                               ["app"], buckets=DECISION_BUCKETS)
policy_timers = Counter("hitl_policy_timers_total", "Policy timers fired: reminder | deadline_near | escalate",
                        ["kind"])
