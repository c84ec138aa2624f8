"""The terminal table, the summary in the JSON, the machine description, and the README table."""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.common import ratio

TARGETS = {"cycles_per_s": 1000, "p99_ms": 50, "held": 10_000, "held_rss_mb": 200, "poller_p99_to_bound": 1.5,
           "cpu_ms_per_cycle": 1.0}
OURS = ("decider", "ingest")  # the processes of a cycle whose CPU the target counts (every replica of each)
PROCESSES = ("decider", "ingest", "poller")  # the columns of the cost rows


def machine() -> dict[str, Any]:
    mem_mb = None
    try:
        with open("/proc/meminfo") as f:
            mem_mb = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    rabbit = None
    try:
        rabbit = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True,
                                timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    pg = None
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_mb": mem_mb, "python": platform.python_version(),
            "platform": platform.platform(), "rabbitmq": rabbit, "postgresql_client": pg}


def _get(d: Any, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    ceiling = _get(results, "baselines", "broker_ceiling", "cycles_per_s")
    out: dict[str, Any] = {"broker_ceiling_cycles_per_s": ceiling, "per_db": {}}
    lost = dup = 0
    for db, sc in results.get("scenarios", {}).items():
        naive = _get(results, "baselines", f"naive_{db}", default={}) or {}
        s: dict[str, Any] = {}
        for r in _get(sc, "throughput", "runs", default=[]) + [sc[k] for k in ("latency", "latency_half") if k in sc]:
            lost += r["counts"]["lost"]
            dup += r["counts"]["duplicated"]
        for step in _get(sc, "held", "steps", default=[]):
            dup += step["counts"]["duplicated"]
        if "notify" in sc:
            lost += sc["notify"]["missing"]
            dup += sc["notify"]["duplicated"]
        if "throughput" in sc:
            best = sc["throughput"]["best"]
            nv = _get(naive, "throughput", "cycles_per_s")
            s["throughput"] = {"cycles_per_s": best["cycles_per_s"],
                               "config": f"ingest×{best['ingest']} decider×{best['decider']}",
                               "vs_broker_ceiling": ratio(best["cycles_per_s"], ceiling),
                               "naive_cycles_per_s": nv, "vs_naive": ratio(best["cycles_per_s"], nv),
                               "target_met": best["cycles_per_s"] >= TARGETS["cycles_per_s"]}
            # The 1×1 stack is the one the latency runs use, and the one whose cost per cycle is read.
            one = [r for r in sc["throughput"]["runs"] if r.get("ingest") == 1 and r.get("decider") == 1]
            if one:
                s["throughput"]["one_by_one"] = one[0]["cycles_per_s"]
                s["throughput"]["one_by_one_vs_ceiling"] = ratio(one[0]["cycles_per_s"], ceiling)
                s["cycle_costs"] = cycle_costs(one[0])
        if "latency" in sc:
            s["latency"] = _latency(sc["latency"], _get(naive, "latency", "decision_to_release", default={}) or {})
        if "latency_half" in sc:
            # The naive peer was measured at --rate, not at this one: no ratio to it.
            s["latency_half"] = _latency(sc["latency_half"], {})
            s["cycle_costs_half"] = cycle_costs(sc["latency_half"])
        if "held" in sc:
            h = sc["held"]
            nh = _get(naive, "held", "max_n_answered")
            s["held"] = {"max_n": h["max_n_answered"], "rss_mb": h["rss_at_max_mb"], "naive_max_n": nh,
                         "naive_rss_mb": _get(naive, "held", "rss_at_max_mb"),
                         "vs_naive": ratio(h["max_n_answered"], nh),
                         # memory compared only at the same N
                         "rss_vs_naive": ratio(h["rss_at_max_mb"], _get(naive, "held", "rss_at_max_mb"))
                         if nh == h["max_n_answered"] else None,
                         "target_met": h["max_n_answered"] >= TARGETS["held"]
                         and (h["rss_at_max_mb"] or 1e9) <= TARGETS["held_rss_mb"]}
        if "poller" in sc and "sizes" in sc["poller"]:
            s["poller"] = {str(r["runs"]): _poller_size(r) for r in sc["poller"]["sizes"]}
            s["poller_baseline"] = {str(r["runs"]): _poller_size(r) for r in sc["poller"].get("baseline", [])}
        if "notify" in sc:
            nt = sc["notify"]
            s["notify"] = {"p50_ms": _get(nt, "latency", "p50_ms"), "p99_ms": _get(nt, "latency", "p99_ms"),
                           "rate": nt["offered_rate"], "notified": nt["notified"], "checkpoints": nt["checkpoints"]}
        out["per_db"][db] = s
    out["totals"] = {"lost": lost, "duplicated": dup}
    return out


def _latency(run: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    """One open-loop run's decision→release figures, against the naive peer's at the same rate."""
    lat = run["decision_to_release"]
    return {**{k: lat[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
            "offered_rate": run["offered_rate"], "achieved_rate": run["cycles_per_s"],
            "naive_p50_ms": naive.get("p50_ms"), "naive_p99_ms": naive.get("p99_ms"),
            "p50_vs_naive": ratio(lat["p50_ms"], naive.get("p50_ms")),
            "p99_vs_naive": ratio(lat["p99_ms"], naive.get("p99_ms")),
            "target_met": lat["p99_ms"] is not None and lat["p99_ms"] <= TARGETS["p99_ms"]
            and run["counts"]["lost"] == 0}


def cycle_costs(run: dict[str, Any]) -> dict[str, Any] | None:
    """What one full cycle cost in a run (bench/counters.py): CPU ms per process and for decider +
    ingest (the target), messages published and consumed by our processes, each process's
    statements, round trips and transactions. None for a run measured before these were counted."""
    pc = run.get("per_cycle")
    if not pc:
        return None
    per = pc["per_process"]

    def of(name: str, figure: str) -> float | None:
        """A figure summed over every replica of a process ("decider", "decider-2", …)."""
        vals = [r[figure] for k, r in per.items() if k.split("-")[0] == name and r.get(figure) is not None]
        return round(sum(vals), 3) if vals else None

    def by_process(figure: str) -> dict[str, float | None]:
        return {name: of(name, figure) for name in PROCESSES}

    cpu = by_process("cpu_ms")
    ours = round(sum(cpu[k] or 0.0 for k in OURS), 3)
    return {"cycles": pc["cycles"], "cpu_ms": cpu, "cpu_ms_ours": ours,
            "cpu_target_met": ours <= TARGETS["cpu_ms_per_cycle"],
            "published": pc["total"]["published"], "consumed": pc["total"]["consumed"],
            "published_by": by_process("published"), "statements": by_process("statements"),
            "round_trips": by_process("round_trips"), "transactions": by_process("transactions")}


def _poller_size(r: dict[str, Any]) -> dict[str, Any]:
    """One size of the poller scenario: the figures of the table, and its target (p99 ≤ 1.5 × bound)."""
    st = r.get("staleness") or {}
    p99 = st.get("p99_ms")
    return {"runs": r["runs"], "finishing": r.get("finishing", r["runs"]), "tracked": r.get("tracked"),
            "recorded": r.get("recorded"),
            "bound_s": r.get("bound_s"), "requests_per_s": r.get("requests_per_s"),
            "rate_limit_per_s": r.get("rate_limit_per_s"), "worst_1s_window": r.get("worst_1s_window"),
            "p50_s": None if st.get("p50_ms") is None else round(st["p50_ms"] / 1000, 2),
            "p99_s": None if p99 is None else round(p99 / 1000, 2),
            "ratio_p99_to_bound": r.get("ratio_p99_to_bound"), "sim_page_ms": _get(r, "sim_page_ms", "page_1"),
            "sim_busy_share": r.get("sim_busy_share"),
            "target_met": p99 is not None and r.get("recorded") == r.get("finishing", r["runs"])
            and p99 / 1000 <= 1.5 * (r.get("bound_s") or 0)}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.1f}"
    return str(v)


def rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    summ = results["summary"]
    dbs = list(summ["per_db"])
    head = ["figure", "target"] + [c for db in dbs for c in (db, f"{db} ratio")]
    table: list[list[str]] = []

    def add(label: str, target: str, getter, ratio_getter=None, ratio_label: str = "") -> None:
        row = [label, target]
        for db in dbs:
            s = summ["per_db"][db]
            row.append(_fmt(getter(s)))
            r = ratio_getter(s) if ratio_getter else None
            row.append(f"{_fmt(r)} {ratio_label}".strip() if r is not None else "")
        table.append(row)

    add("cycles/s (best config)", "≥ 1000", lambda s: _get(s, "throughput", "cycles_per_s"),
        lambda s: _get(s, "throughput", "vs_broker_ceiling"), "× broker ceiling")
    add("  config", "", lambda s: _get(s, "throughput", "config"))
    add("  vs naive peer", "", lambda s: _get(s, "throughput", "naive_cycles_per_s"),
        lambda s: _get(s, "throughput", "vs_naive"), "× naive")
    add("  ingest×1 decider×1 cycles/s", "", lambda s: _get(s, "throughput", "one_by_one"),
        lambda s: _get(s, "throughput", "one_by_one_vs_ceiling"), "× broker ceiling")
    _cost_rows(add, "cycle_costs", "1×1 closed loop")
    _latency_rows(add, "latency", f"{_rate_of(summ, 'latency')}/s")
    add("  naive p50 / p99 ms", "",
        lambda s: f"{_fmt(_get(s, 'latency', 'naive_p50_ms'))} / {_fmt(_get(s, 'latency', 'naive_p99_ms'))}"
        if _get(s, "latency") else None)
    _latency_rows(add, "latency_half", "half capacity")
    _cost_rows(add, "cycle_costs_half", "at half capacity", short=True)
    add("held calls answered (max N)", "10000", lambda s: _get(s, "held", "max_n"),
        lambda s: _get(s, "held", "vs_naive"), "× naive")
    add("  ingest RSS at max N, MB", "≤ 200", lambda s: _get(s, "held", "rss_mb"),
        lambda s: _get(s, "held", "rss_vs_naive"), "× naive (same N)")
    add("  naive max N / RSS MB", "",
        lambda s: f"{_fmt(_get(s, 'held', 'naive_max_n'))} / {_fmt(_get(s, 'held', 'naive_rss_mb'))}"
        if _get(s, "held") else None)
    sizes = sorted({int(n) for db in dbs for n in (summ["per_db"][db].get("poller") or {})})
    for n in sizes:
        _poller_rows(add, str(n))
    add("notification p50 / p99 ms after checkpoint.opened", "",
        lambda s: f"{_fmt(_get(s, 'notify', 'p50_ms'))} / {_fmt(_get(s, 'notify', 'p99_ms'))}"
        if _get(s, "notify") else None)
    add("  checkpoints/s, notified / opened", "all",
        lambda s: f"{_fmt(_get(s, 'notify', 'rate'))}/s, {_get(s, 'notify', 'notified')} / "
                  f"{_get(s, 'notify', 'checkpoints')}" if _get(s, "notify") else None)
    table.append(["broker ceiling, cycles/s", "", _fmt(summ["broker_ceiling_cycles_per_s"])] + [""] * (len(head) - 3))
    table.append(["lost / duplicated (all runs)", "0 / 0", f"{summ['totals']['lost']} / {summ['totals']['duplicated']}"]
                 + [""] * (len(head) - 3))
    return head, table


def _rate_of(summ: dict[str, Any], key: str) -> str:
    """The offered rate of a latency run, as the label of its rows (one per store if they differ)."""
    rates = {_get(s, key, "offered_rate") for s in summ["per_db"].values()} - {None}
    return "/".join(_fmt(r) for r in sorted(rates)) or "?"


def _latency_rows(add, key: str, label: str) -> None:
    """decision→release percentiles of one open-loop run, and the rate it was offered and achieved."""
    add(f"decision→release p50 ms @{label}", "", lambda s: _get(s, key, "p50_ms"),
        lambda s: _get(s, key, "p50_vs_naive"), "× naive")
    add("  offered / achieved cycles/s", "",
        lambda s: f"{_fmt(_get(s, key, 'offered_rate'))} / {_fmt(_get(s, key, 'achieved_rate'))}"
        if _get(s, key) else None)
    add("  decision→release p95 ms", "", lambda s: _get(s, key, "p95_ms"))
    add("  decision→release p99 ms", "≤ 50", lambda s: _get(s, key, "p99_ms"),
        lambda s: _get(s, key, "p99_vs_naive"), "× naive")


def _cost_rows(add, key: str, label: str, short: bool = False) -> None:
    """CPU, messages and store traffic per full cycle of one run (`short`: the CPU rows only)."""
    def per_process(*path: str):
        return lambda s: " / ".join(_fmt(_get(s, key, *path, p)) for p in PROCESSES) if _get(s, key) else None

    def store(process: str):
        return lambda s: (" / ".join(_fmt(_get(s, key, f, process)) for f in ("statements", "round_trips",
                                                                               "transactions"))
                          if _get(s, key) else None)

    add(f"CPU ms per cycle, decider + ingest ({label})", "≤ 1.0", lambda s: _get(s, key, "cpu_ms_ours"))
    add("  decider / ingest / poller CPU ms", "", per_process("cpu_ms"))
    if short:
        return
    add("  messages published / consumed per cycle", "",
        lambda s: f"{_fmt(_get(s, key, 'published'))} / {_fmt(_get(s, key, 'consumed'))}" if _get(s, key) else None)
    add("  published by decider / ingest / poller", "", per_process("published_by"))
    add("  decider SQL statements / round trips / transactions", "", store("decider"))
    add("  poller SQL statements / round trips / transactions", "", store("poller"))


def _poller_rows(add, key: str) -> None:
    """The rows of one size of the poller scenario (listing, and the one-GET-per-run baseline)."""
    def two(section: str, a: str, b: str):
        return lambda s: (f"{_fmt(_get(s, section, key, a))} / {_fmt(_get(s, section, key, b))}"
                          if _get(s, section, key) else None)

    add(f"poller: {int(key):,} live runs, bound (N/100)/rate s", "", lambda s: _get(s, "poller", key, "bound_s"))
    add("  requests/s / limit", "≤ limit", two("poller", "requests_per_s", "rate_limit_per_s"))
    add("  staleness p50 / p99 s", "p99 ≤ 1.5 × bound", two("poller", "p50_s", "p99_s"),
        lambda s: _get(s, "poller", key, "ratio_p99_to_bound"), "× bound")
    add("  one GET per run (before) p50 / p99 s", "",
        lambda s: two("poller_baseline", "p50_s", "p99_s")(s) or "not run (~N/rate)",
        lambda s: _get(s, "poller_baseline", key, "ratio_p99_to_bound"), "× bound")
    add("  finished runs recorded", "all", two("poller", "recorded", "finishing"))
    add("  simulator ms per logs page / share busy", "", two("poller", "sim_page_ms", "sim_busy_share"))


def table(results: dict[str, Any]) -> str:
    head, body = rows(results)
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])


def markdown(results: dict[str, Any]) -> str:
    head, body = rows(results)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body]
    m = results["machine"]
    out += ["", f"Machine: {m['nproc']} cores ({m.get('cpu') or '?'}), {m['memory_mb']} MB, Python {m['python']}, "
                f"RabbitMQ {m.get('rabbitmq')}, {m.get('postgresql_client') or 'PostgreSQL ?'}; "
                f"run {results['started_at']}, {results['elapsed_s']} s{' (smoke)' if results['smoke'] else ''}."]
    return "\n".join(out)


def update_readme(path: Path, results: dict[str, Any]) -> None:
    text = path.read_text()
    block = "<!-- results:start -->\n" + markdown(results) + "\n<!-- results:end -->"
    new = re.sub(r"<!-- results:start -->.*?<!-- results:end -->", lambda _m: block, text, flags=re.S)
    path.write_text(new)
