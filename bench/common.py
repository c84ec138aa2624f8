"""Small pieces every scenario uses: percentiles, cycle accounting, process RSS/CPU, file limits.

Nothing here measures anything by itself; it is plain arithmetic, unit-tested in
tests/unit/test_bench_common.py.
"""
from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

# One record per HTTP checkpoint call made by a simulated Dify node:
# (workflow_run_id, t_start, t_answer | None, status | None, action | None, checkpoint_id | None, error | None)
# Times are time.monotonic() (CLOCK_MONOTONIC: one clock for every process on the machine).
CallRecord = tuple


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values_s: Iterable[float]) -> dict[str, Any]:
    vals = [v * 1000 for v in values_s]
    out = {"n": len(vals)}
    for q in (50, 95, 99):
        p = percentile(vals, q)
        out[f"p{q}_ms"] = None if p is None else round(p, 2)
    out["max_ms"] = round(max(vals), 2) if vals else None
    return out


@dataclass
class Counts:
    """Every run counts its cycles: speed never hides loss."""

    started: int = 0
    answered: int = 0
    ok: int = 0  # 200 with the expected action for the checkpoint the reviewer decided
    non200: int = 0
    wrong: int = 0  # 200 but not the expected answer (other action, other checkpoint)
    lost: int = 0  # never answered (client error / timeout / still open when the run ended)
    duplicated: int = 0  # answered twice, or the store shows two resolutions / two checkpoints for one call
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_calls(records: list[CallRecord], decided: dict[str, str] | None = None,
                expected_action: str = "approve") -> Counts:
    """Count a list of call records. `decided` maps workflow_run_id → the checkpoint id the
    reviewer decided; an answer naming another checkpoint is `wrong`."""
    c = Counts()
    seen: dict[str, int] = {}
    for run_id, _t0, t1, status, action, cp_id, error in records:
        c.started += 1
        seen[run_id] = seen.get(run_id, 0) + 1
        if t1 is None or status is None:
            c.lost += 1
            key = (error or "unanswered").split(":")[0][:60]
            c.errors[key] = c.errors.get(key, 0) + 1
            continue
        c.answered += 1
        c.statuses[str(status)] = c.statuses.get(str(status), 0) + 1
        if status != 200:
            c.non200 += 1
        elif action != expected_action or (decided is not None and decided.get(run_id) not in (None, cp_id)):
            c.wrong += 1
        else:
            c.ok += 1
    c.duplicated += sum(n - 1 for n in seen.values() if n > 1)
    return c


def completions_in_window(records: list[CallRecord], start: float, end: float) -> int:
    """200 answers whose answer time falls in [start, end): the steady-state part of a run."""
    return sum(1 for r in records if r[2] is not None and r[3] == 200 and start <= r[2] < end)


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE as far as the hard limit allows; returns the soft limit now in place."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB, from /proc (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return None


def ratio(value: float | None, base: float | None, digits: int = 3) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, digits)


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def worst_window(times: list[float], window: float) -> int:
    """Most requests in any `window` seconds (times sorted)."""
    worst, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        worst = max(worst, i - j + 1)
    return worst
