"""Prometheus metrics, named by the thing measured (`hitl_<noun>_<unit>`), labelled by app / node /
queue / outcome only — never by run, checkpoint or message id (unbounded label values)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
resume_stuck = Counter("hitl_resume_stuck_total", "Submitted Dify forms whose run stayed paused")
