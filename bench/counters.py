"""What one full cycle costs, per process: messages published and consumed, SQL statements, round
trips and transactions (the processes' own counters on /metrics, read before and after a run), and
CPU milliseconds (process CPU time ÷ cycles). Cycles/s alone cannot say where a change saved work;
these say it per message and per statement.

The counters are the ones every process exports (shared/metrics.py): `hitl_publish_confirm_seconds`
counts confirmed publishes, `hitl_messages_consumed_total` deliveries handed to a handler,
`hitl_store_*_total` the store traffic (shared/store/counting.py). A scrape of the decider also runs
its store gauges' query (cached 5 s): a few statements per run, not per cycle.
"""
from __future__ import annotations

from typing import Any

import httpx

# figure → the sample names summed for it (over every label: commit and rollback are both transactions)
FIGURES = {
    "published": ("hitl_publish_confirm_seconds_count",),
    "consumed": ("hitl_messages_consumed_total",),
    "statements": ("hitl_store_statements_total",),
    "round_trips": ("hitl_store_round_trips_total",),
    "transactions": ("hitl_store_transactions_total",),
}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → {sample name: value summed over its labels}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


async def scrape(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """/metrics of each process (key → base URL); a process that does not answer reads as empty, and
    its figures then read as unknown rather than as zero."""
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for key, url in urls.items():
            try:
                r = await client.get(url + "/metrics")
                out[key] = parse_metrics(r.text) if r.status_code == 200 else {}
            except httpx.HTTPError:
                out[key] = {}
    return out


def _row(before: dict[str, float], after: dict[str, float], cpu_s: float | None, n: int) -> dict[str, float | None]:
    """One process's figures per cycle; None where it was not scraped after the run or its CPU is unknown."""
    row: dict[str, float | None] = {}
    for figure, names in FIGURES.items():
        delta = sum(after.get(x, 0.0) - before.get(x, 0.0) for x in names)
        row[figure] = round(delta / n, 2) if after else None
    row["cpu_ms"] = round(cpu_s * 1000 / n, 3) if cpu_s is not None else None
    return row


def per_cycle(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
              cpu_s: dict[str, float], cycles: int) -> dict[str, Any]:
    """Each figure per cycle, per process and summed over them: `{"cycles", "per_process": {key: {...}}, "total"}`."""
    n = max(1, cycles)
    per = {key: _row(before.get(key, {}), after.get(key, {}), cpu_s.get(key), n)
           for key in sorted(set(before) | set(after) | set(cpu_s))}
    total = {figure: round(sum(r[figure] or 0.0 for r in per.values()), 2) for figure in (*FIGURES, "cpu_ms")}
    return {"cycles": cycles, "per_process": per, "total": total}


__all__ = ["FIGURES", "parse_metrics", "per_cycle", "scrape"]
