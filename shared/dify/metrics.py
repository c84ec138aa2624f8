"""Metrics of the Dify client (`hitl_<noun>_<unit>`). `endpoint` is a route name such as
`get_run` or `logs`, never a URL with ids in it (unbounded label values)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1200)

calls = Counter("hitl_dify_calls_total", "Dify service-API requests, by HTTP status ('error' when none came)",
                ["app", "endpoint", "status"])
latency = Histogram("hitl_dify_latency_seconds", "Dify service-API request duration (until the headers for streams)",
                    ["app", "endpoint"], buckets=LATENCY_BUCKETS)
ratelimit_waits = Counter("hitl_dify_ratelimit_waits_total", "Dify calls that waited for the client-side rate limit",
                          ["app"])
