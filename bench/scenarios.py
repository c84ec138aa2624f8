"""The four scenarios against the real processes: (1) throughput of full cycles, (2) decision →
release latency at a fixed offered rate, (3) held calls and ingest memory, (4) one poller tracking
many live runs (bench/poller.py). Each returns a plain dict for the JSON file and the table."""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from bench.common import (
    completions_in_window,
    count_calls,
    cpu_seconds,
    machine_busy_seconds,
    raise_nofile,
    rss_mb,
    summary_ms,
)
from bench.counters import per_cycle, scrape
from bench.load import Reviewer, WorkerPlan, Workers
from bench.stack import APP_TOKEN, RABBITMQ_URL, BenchStack

SERVICE_ENV: dict[str, str] = {}  # --service-env: applied to every stack the scenarios start


class Sampler:
    """CPU (cores used, and CPU seconds for the cost of a cycle) and peak RSS of the stack's processes
    while a scenario runs."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.5) -> None:
        self.pids, self.every_s = pids, every_s
        self.peak_rss: dict[str, float] = {}
        self._cpu0: dict[str, float] = {}
        self._cpu_last: dict[str, float] = {}
        self._t0 = 0.0
        self._task: asyncio.Task | None = None
        self.result: dict[str, Any] = {}

    async def _loop(self) -> None:
        while True:
            for key, pid in self.pids.items():
                mb = rss_mb(pid)
                if mb is not None:
                    self.peak_rss[key] = max(self.peak_rss.get(key, 0.0), mb)
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self._cpu_last[key] = cpu
            await asyncio.sleep(self.every_s)

    def start(self) -> Sampler:
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_seconds()
        self._cpu0 = {k: cpu_seconds(p) or 0.0 for k, p in self.pids.items()}
        self._task = asyncio.create_task(self._loop())
        return self

    def stop(self) -> dict[str, Any]:
        if self._task:
            self._task.cancel()
        wall = max(1e-6, time.monotonic() - self._t0)
        for k, p in self.pids.items():
            cpu = cpu_seconds(p)
            if cpu is not None:
                self._cpu_last[k] = cpu
        cpu_s = {k: self._cpu_last.get(k, 0.0) - self._cpu0.get(k, 0.0) for k in self.pids}
        cores = {k: round(v / wall, 2) for k, v in cpu_s.items()}
        busy = machine_busy_seconds()
        machine = round((busy - self._busy0) / wall, 2) if busy is not None and self._busy0 is not None else None
        ours = round(sum(cores.values()), 2)
        # The machine is shared: whatever else ran (RabbitMQ included) is in machine - ours.
        self.result = {"cores_used": cores, "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
                       "wall_s": round(wall, 2), "peak_rss_mb": dict(self.peak_rss), "machine_cores_busy": machine,
                       "ours_cores": ours, "others_cores": round(machine - ours, 2) if machine is not None else None,
                       "loadavg_1m": os.getloadavg()[0]}
        return self.result


async def run_cycles(stack: BenchStack, *, mode: str, clients: int, concurrency: int = 32, duration_s: float = 10,
                     rate: float = 200, warmup_s: float = 2.0, max_calls: int = 1_000_000,
                     profile: Any = None) -> dict[str, Any]:
    """Closed-loop (throughput) or open-loop (fixed rate) full checkpoint cycles."""
    reviewer = Reviewer(RABBITMQ_URL, stack.namespace)
    await reviewer.start()
    prefix = f"{mode[0]}{uuid.uuid4().hex[:8]}-"
    plans = [WorkerPlan(worker=w, urls=stack.ingest_urls, token=APP_TOKEN, run_prefix=prefix, mode=mode,
                        concurrency=max(1, concurrency // clients), duration_s=duration_s,
                        max_calls=max(1, max_calls // clients), rate=rate / clients, read_timeout_s=120,
                        drain_s=30) for w in range(clients)]
    workers = Workers(plans)
    workers.start()
    pids = stack.pids()
    services = {k: stack.ps.url(k) for k in pids}  # ours, before the client processes join `pids`
    counters_before = await scrape(services)
    pids.update({f"client-{i}": p.pid for i, p in enumerate(workers.procs)})
    sampler = Sampler(pids).start()
    t_go = workers.go_now()
    if profile is not None:
        profile.start(stack, duration_s=max(1.0, duration_s - warmup_s - 1), delay_s=warmup_s)
    records = await workers.results(timeout_s=duration_s + 90)
    usage = sampler.stop()
    counters_after = await scrape(services)
    await asyncio.sleep(0.5)  # late duplicate events, if any
    await reviewer.close()
    counts = count_calls(records, reviewer.opened)
    audit = stack.store_audit(prefix)
    counts.duplicated += audit["runs_with_two_checkpoints"] + audit["checkpoints_with_two_applied_decisions"]
    steady = max(0.1, duration_s - warmup_s)
    latencies = [r[2] - reviewer.decided_at[r[0]] for r in records
                 if r[3] == 200 and r[0] in reviewer.decided_at and r[2] is not None]
    cycle_times = [r[2] - r[1] for r in records if r[3] == 200 and r[2] is not None]
    out: dict[str, Any] = {
        "mode": mode, "db": stack.db_kind, "ingest": len(stack.ingest_keys), "decider": len(stack.decider_keys),
        "clients": clients, "concurrency": concurrency if mode == "closed" else None,
        "offered_rate": rate if mode == "open" else None, "duration_s": duration_s, "warmup_s": warmup_s,
        "cycles_per_s": round(completions_in_window(records, t_go + warmup_s, t_go + duration_s) / steady, 1),
        "counts": counts.as_dict(), "store": audit,
        "reviewer": {"opened_seen": len(reviewer.opened), "duplicate_events": reviewer.duplicate_events,
                     "publish_failures": reviewer.publish_failures},
        "decision_to_release": summary_ms(latencies), "cycle": summary_ms(cycle_times),
        "usage": usage, "client_failures": workers.failures,
        # Per full cycle (every call answered 200, warm-up and drain included, as the CPU is): messages,
        # statements, round trips, CPU ms — per process and summed. The reviewer bot's decision (one
        # publish per cycle) is the bench's, not ours: it is not in these counts.
        "per_cycle": per_cycle(counters_before, counters_after,
                               {k: v for k, v in usage["cpu_s"].items() if k in services}, counts.ok),
    }
    if profile is not None:
        out["profile"] = profile.collect()
    return out


async def throughput(db_kind: str, *, configs: list[tuple[int, int]], clients: int, concurrency: int,
                     duration_s: float, warmup_s: float, profile_factory=None, log=print) -> dict[str, Any]:
    runs = []
    for ingest_n, decider_n in configs:
        async with BenchStack(db_kind, ingest=ingest_n, decider=decider_n) as stack:
            log(f"  throughput {db_kind}: ingest×{ingest_n} decider×{decider_n}, {concurrency} calls in flight, "
                f"{duration_s:.0f}s")
            profile = profile_factory(f"{db_kind}-i{ingest_n}-d{decider_n}") if profile_factory else None
            r = await run_cycles(stack, mode="closed", clients=clients, concurrency=concurrency, duration_s=duration_s,
                                 warmup_s=warmup_s, profile=profile)
            log(f"    → {r['cycles_per_s']} cycles/s, lost {r['counts']['lost']}, dup {r['counts']['duplicated']}, "
                f"non-200 {r['counts']['non200']}")
            runs.append(r)
    best = max(runs, key=lambda r: r["cycles_per_s"])
    return {"runs": runs, "best": {"cycles_per_s": best["cycles_per_s"], "ingest": best["ingest"],
                                   "decider": best["decider"]}}


def half_capacity(throughput: dict[str, Any] | None, fallback: float | None) -> float | None:
    """Half the capacity measured in this run, the rate of the `latency_half` run: latency at 200/s
    says little when 200/s is most of what the stack carries, latency at half of it is comparable
    across machines and changes. Of the ingest×1 decider×1 stack the latency runs use (the best config
    when 1×1 was not measured); `fallback` (--half-rate) when throughput was not run."""
    runs = (throughput or {}).get("runs") or []
    one = [r for r in runs if r.get("ingest") == 1 and r.get("decider") == 1] or runs
    if not one:
        return fallback
    return round(max(r["cycles_per_s"] for r in one) / 2, 1) or fallback


async def latency(db_kind: str, *, rate: float, duration_s: float, clients: int, log=print) -> dict[str, Any]:
    async with BenchStack(db_kind) as stack:
        log(f"  latency {db_kind}: {rate:.0f} cycles/s offered for {duration_s:.0f}s")
        r = await run_cycles(stack, mode="open", clients=clients, rate=rate, duration_s=duration_s,
                             warmup_s=min(2.0, duration_s / 4))
        log(f"    → decision→release p50 {r['decision_to_release']['p50_ms']} ms, "
            f"p99 {r['decision_to_release']['p99_ms']} ms, "
            f"lost {r['counts']['lost']}")
        return r


# ---------------------------------------------------------------------- (3) held calls
async def held_step(stack_or_url: Any, n: int, *, pid: int | None, namespace: str | None, hold_s: float,
                    clients: int, decide: Any, opened_count: Any, settle_timeout_s: float,
                    token: str = APP_TOKEN, log=print) -> dict[str, Any]:
    """Open n calls, wait until all are held, read the server's RSS, decide them all, count answers.
    `decide()` / `opened_count()` come from the reviewer of whichever server is measured."""
    urls = stack_or_url if isinstance(stack_or_url, list) else stack_or_url.ingest_urls
    prefix = f"h{uuid.uuid4().hex[:8]}-"
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    plans = [WorkerPlan(worker=w, urls=urls, token=token, run_prefix=prefix, mode="held", n=per[w],
                        read_timeout_s=hold_s + 5, timeout_s=900, drain_s=15, ramp_per_s=1500 / clients)
             for w in range(clients) if per[w] > 0]
    rss_before = rss_mb(pid) if pid else None
    workers = Workers(plans)
    workers.start()
    t_go = workers.go_now()
    # every call held: the reviewer has seen all of them opened (bounded by the hold window)
    deadline = t_go + hold_s * 0.6
    # opened_count() counts what the reviewer has seen opened (an event consumer, or the naive peer's
    # DB-polling thread): neither signals anything awaitable, so the count is polled
    while opened_count(prefix) < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.25)
    all_held_s = time.monotonic() - t_go
    held = opened_count(prefix)
    await asyncio.sleep(1.0)
    rss_held = rss_mb(pid) if pid else None
    t_decide = time.monotonic()
    await decide(prefix)
    records = await workers.results(timeout_s=hold_s + 60)
    counts = count_calls(records)
    released = [r[2] - t_decide for r in records if r[3] == 200 and r[2] is not None]
    within = sum(1 for r in records if r[3] == 200 and r[2] is not None and r[2] - r[1] <= hold_s)
    ok = counts.ok == n and counts.lost == 0 and counts.non200 == 0 and counts.duplicated == 0
    result = {"n": n, "held": held, "all_held_after_s": round(all_held_s, 1), "rss_before_mb": rss_before,
              "rss_held_mb": rss_held,
              "rss_per_held_call_kb": round((rss_held - rss_before) * 1024 / n, 1) if rss_held and rss_before else None,
              "answered_within_window": within, "all_answered_200": ok, "counts": counts.as_dict(),
              "release_all_s": round(max(released), 2) if released else None, "client_failures": workers.failures}
    log(f"    N={n}: held {held}, RSS {rss_held} MB, answered 200 within window {within}/{n}, lost {counts.lost}")
    return result


async def held_calls(db_kind: str, *, steps: list[int], hold_s: float, clients: int, log=print) -> dict[str, Any]:
    raise_nofile(65536)
    # One app holds every call here: lift its per-process cap (HITL_MAX_HELD_PER_APP) above the largest step.
    env = {"HITL_HOLD_MAX_S": str(hold_s + 1), "HITL_HOLD_DEFAULT_S": str(min(55.0, hold_s)), "HITL_HOLD_MARGIN_S": "5",
           "HITL_MAX_HELD_PER_APP": str(max(steps))}
    results = []
    async with BenchStack(db_kind, env=env) as stack:
        reviewer = Reviewer(RABBITMQ_URL, stack.namespace, auto=False, prefetch=5000)
        await reviewer.start()
        pid = stack.pid(stack.ingest_keys[0])
        log(f"  held calls {db_kind}: steps {steps}, hold window {hold_s:.0f}s")

        def opened_count(prefix: str) -> int:
            return sum(1 for r in reviewer.opened if r.startswith(prefix))

        async def decide(prefix: str) -> None:
            await reviewer.decide_all([r for r in reviewer.opened if r.startswith(prefix)])

        try:
            for n in steps:
                r = await held_step(stack, n, pid=pid, namespace=stack.namespace, hold_s=hold_s, clients=clients,
                                    decide=decide, opened_count=opened_count, settle_timeout_s=hold_s, log=log)
                results.append(r)
                if not r["all_answered_200"]:
                    break
                await asyncio.sleep(2)  # let the closed connections go
        finally:
            await reviewer.close()
    good = [r["n"] for r in results if r["all_answered_200"]]
    top = max(results, key=lambda r: r["n"]) if results else {}
    return {"db": db_kind, "steps": results, "max_n_answered": max(good) if good else 0,
            "rss_at_max_mb": next((r["rss_held_mb"] for r in results if good and r["n"] == max(good)), None),
            "largest_step": top.get("n"), "hold_window_s": hold_s}


# ---------------------------------------------------------------------- (4) poller: bench/poller.py
from bench.poller import poller  # noqa: E402  (the scenario lives in its own module)

__all__ = ["Sampler", "half_capacity", "held_calls", "held_step", "latency", "poller", "run_cycles", "throughput"]
