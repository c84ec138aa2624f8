"""The poller's own metrics (`hitl_<noun>_<unit>`, labelled by app and outcome only). Its Dify requests
are counted by the Dify client (`hitl_dify_calls_total{endpoint="logs"|"get_run"}`)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

PASS_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

listing_pass = Histogram("hitl_listing_pass_seconds", "One pass over an app's logs listing (about the longest a "
                         "finished run waits to be seen)", ["app"], buckets=PASS_BUCKETS)
listing_changes = Counter("hitl_listing_runs_changed_total", "Runs discovered or updated from the logs listing",
                          ["app"])
form_captures = Counter("hitl_form_captures_total", "Re-attaches to capture a paused run's form, by outcome "
                        "(captured | failed | unavailable)", ["app", "outcome"])
stream_reattaches = Counter("hitl_stream_reattaches_total", "Re-attaches to runs whose live stream lost its reader",
                            ["app"])
