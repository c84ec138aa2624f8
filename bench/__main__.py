"""python -m bench [--smoke] [--db sqlite,postgresql] [--scenarios ...] [--profile] [--out FILE]

Runs the scenarios against the real processes, with the baselines measured in the same run, prints
a table, writes bench/results/latest.json (and refreshes the results table in bench/README.md when
asked with --readme)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import baselines, notify, report, scenarios
from bench.common import raise_nofile
from bench.profile import Profiler
from shared.logs import setup_logging
from shared.runner import run as run_loop

HERE = Path(__file__).resolve().parent
ALL = ("ceiling", "throughput", "latency", "held", "poller", "naive", "notify")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny, seconds: checks the machinery (CI), not speed")
    p.add_argument("--db", default="sqlite,postgresql", help="comma list: sqlite, postgresql")
    p.add_argument("--scenarios", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per throughput run")
    p.add_argument("--concurrency", type=int, default=256, help="calls in flight in the throughput scenario")
    p.add_argument("--configs", default="1x1,1x2,2x1,2x2", help="throughput configs: INGESTxDECIDER,...")
    p.add_argument("--clients", type=int, default=2, help="client processes for the throughput scenario")
    p.add_argument("--rate", type=float, default=200.0, help="offered cycles/s in the latency scenario")
    p.add_argument("--latency-duration", type=float, default=20.0)
    p.add_argument("--half-rate", type=float, default=None,
                   help="the rate of the half-capacity latency run when throughput is not measured in this run "
                        "(else: half the ingest×1 decider×1 cycles/s measured)")
    p.add_argument("--held-steps", default="1000,2500,5000,10000")
    p.add_argument("--hold", type=float, default=120.0, help="hold window (s) in the held-calls scenario")
    p.add_argument("--held-clients", type=int, default=4)
    p.add_argument("--naive-held-steps", default="500,1000,2500,5000,10000")
    p.add_argument("--poller-runs", default="5000,20000,50000", help="live runs tracked, a comma list of sizes")
    p.add_argument("--poller-rate", type=float, default=10.0, help="HITL_DIFY_RATE_PER_S for the poller scenario")
    p.add_argument("--poller-baseline", default="5000",
                   help="sizes measured with the former algorithm too (one GET per live run; ~N/rate s each)")
    p.add_argument("--poller-finish-window", type=float, default=60.0,
                   help="seconds over which the finishing runs finish")
    p.add_argument("--poller-finishing", type=int, default=2000, help="live runs that finish while measured (per size)")
    p.add_argument("--notify-rate", type=float, default=50.0, help="checkpoints/s in the notification scenario")
    p.add_argument("--notify-duration", type=float, default=20.0)
    p.add_argument("--service-env", action="append", default=[], metavar="HITL_X=V",
                   help="extra environment for the service processes (repeatable), e.g. HITL_HANDLER_THREADS=2")
    p.add_argument("--profile", action="store_true", help="py-spy on ingest and decider in the throughput scenario")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    p.add_argument("--merge", action="store_true",
                   help="keep what --out already holds and replace only the scenarios/baselines run now")
    p.add_argument("--readme", action="store_true", help="also rewrite the results section of bench/README.md")
    args = p.parse_args(argv)
    if args.smoke:
        args.db = args.db if "--db" in " ".join(argv) else "sqlite"
        smoke = "ceiling,throughput,latency,held,naive,notify"
        args.scenarios = args.scenarios if "--scenarios" in " ".join(argv) else smoke
        args.duration, args.concurrency, args.configs, args.clients = 3.0, 16, "1x1", 1
        args.rate, args.latency_duration = 20.0, 3.0
        args.held_steps, args.naive_held_steps, args.hold, args.held_clients = "50", "50", 20.0, 1
        args.poller_runs, args.poller_rate, args.poller_baseline, args.poller_finish_window = "300", 20.0, "", 5.0
        args.notify_rate, args.notify_duration = 10.0, 3.0
    return args


def _out_dir(out: str) -> Path:
    """The folder of the results file (resolve() touches the filesystem: kept out of the event loop)."""
    return Path(out).resolve().parent


async def main(args: argparse.Namespace) -> dict:
    raise_nofile(65536)
    setup_logging("WARNING", "console", "bench")
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = wanted - set(ALL)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    scenarios.SERVICE_ENV.update(dict(kv.split("=", 1) for kv in args.service_env))
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",") if c]
    out_dir = _out_dir(args.out)
    results: dict = {"machine": report.machine(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "smoke": args.smoke, "args": vars(args), "baselines": {}, "scenarios": {}}
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    started = time.monotonic()
    if "ceiling" in wanted:
        log("broker ceiling (shared.broker.Broker, the same messages as one cycle, no HTTP, no store)")
        results["baselines"]["broker_ceiling"] = await baselines.broker_ceiling(
            concurrency=args.concurrency, duration_s=args.duration, warmup_s=min(2.0, args.duration / 3), log=log)
    for db in dbs:
        per = results["scenarios"].setdefault(db, {})
        base = results["baselines"].setdefault(f"naive_{db}", {})
        if "throughput" in wanted:
            factory = (lambda label: Profiler(out_dir, label)) if args.profile else None
            per["throughput"] = await scenarios.throughput(
                db, configs=configs, clients=args.clients, concurrency=args.concurrency, duration_s=args.duration,
                warmup_s=min(2.0, args.duration / 3), profile_factory=factory, log=log)
        if "naive" in wanted:
            log(f"naive peer ({db}): thread per held call, DB polled every 100 ms")
            base.update(await baselines.naive_all(db, concurrency=args.concurrency, duration_s=args.duration,
                                                  rate=args.rate, latency_duration_s=args.latency_duration,
                                                  held_steps=[int(x) for x in args.naive_held_steps.split(",")],
                                                  hold_s=args.hold, clients=args.clients,
                                                  held_clients=args.held_clients,
                                                  run_latency="latency" in wanted, run_held="held" in wanted,
                                                  run_throughput="throughput" in wanted, log=log))
        if "latency" in wanted:
            per["latency"] = await scenarios.latency(db, rate=args.rate, duration_s=args.latency_duration,
                                                     clients=1, log=log)
            half = scenarios.half_capacity(per.get("throughput"), args.half_rate)
            if half:
                per["latency_half"] = await scenarios.latency(db, rate=half, duration_s=args.latency_duration,
                                                              clients=1, log=log)
        if "held" in wanted:
            per["held"] = await scenarios.held_calls(db, steps=[int(x) for x in args.held_steps.split(",")],
                                                     hold_s=args.hold, clients=args.held_clients, log=log)
        if "notify" in wanted:
            per["notify"] = await notify.notify_latency(db, rate=args.notify_rate, duration_s=args.notify_duration,
                                                        log=log)
        if "poller" in wanted:
            per["poller"] = await scenarios.poller(
                db, sizes=[int(x) for x in args.poller_runs.split(",") if x],
                baseline_sizes=[int(x) for x in args.poller_baseline.split(",") if x], rate_per_s=args.poller_rate,
                finish_window_s=args.poller_finish_window, finishing=args.poller_finishing, log=log)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["summary"] = report.summarize(results)
    return results


def merge(old: dict, new: dict) -> dict:
    """`old` with every scenario and baseline part that `new` measured replaced by `new`'s."""
    merged = {**old, "machine": new["machine"], "merged_runs": old.get("merged_runs", []) + [
        {"started_at": new["started_at"], "args": new["args"], "elapsed_s": new["elapsed_s"]}]}
    for section in ("scenarios", "baselines"):
        merged.setdefault(section, {})
        for key, parts in new.get(section, {}).items():
            if isinstance(parts, dict) and isinstance(merged[section].get(key), dict) and key != "broker_ceiling":
                merged[section][key] = {**merged[section][key], **parts}
            elif parts:
                merged[section][key] = parts
    merged["summary"] = report.summarize(merged)
    return merged


def run(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    results = run_loop(main(args))
    out = Path(args.out)
    if args.merge and out.exists():
        results = merge(json.loads(out.read_text()), results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(report.table(results))
    print(f"\nwritten: {out}")
    if args.readme:
        report.update_readme(HERE / "README.md", results)
        print(f"updated: {HERE / 'README.md'}")
    totals = results["summary"]["totals"]
    return 0 if totals["lost"] == 0 and totals["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run())
