"""How fast GET /v1/workflows/logs answers with many runs: python -m tests.difysim.bench_logs [--sizes 5000,20000,50000]

Each size gets a fresh in-process simulator (httpx ASGI transport: no sockets, so the figures are the
simulator's own cost, JSON included), N finished bulk runs spread over a day (status mix 8:1:1
succeeded/failed/stopped, 10 end users), then every query below is timed `--repeat` times; the table
shows the median in milliseconds. It prints figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import datetime, timezone

from .testing import echo_graph, in_process, register

LIMIT = 100


def queries(size: int, middle: float) -> dict[str, str]:
    deep = max(1, size // LIMIT)
    after = datetime.fromtimestamp(middle, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "page 1": f"limit={LIMIT}&page=1",
        "last page": f"limit={LIMIT}&page={deep}",
        "status=failed, page 1": f"limit={LIMIT}&status=failed",
        "status=succeeded, its last page": f"limit={LIMIT}&status=succeeded&page={max(1, deep * 8 // 10)}",
        "created_at__after (half), page 1": f"limit={LIMIT}&created_at__after={after}",
        "session id, page 1": f"limit={LIMIT}&created_by_end_user_session_id=bulk-user-3",
        "keyword (scans), page 1": f"limit={LIMIT}&keyword=bulk-user-3",
    }


async def measure(size: int, repeat: int) -> dict[str, float]:
    async with in_process() as client:
        auth = await register(client, echo_graph())
        started = time.perf_counter()
        made = (await client.post("/_sim/apps/app/bulk-runs", json={
            "count": size, "statuses": {"succeeded": 8, "failed": 1, "stopped": 1}, "created_at_spread_s": 86400,
            "users": 10, "include_runs": False})).json()
        figures = {"bulk-runs (create)": (time.perf_counter() - started) * 1000}
        middle = (made["created_at"]["min"] + made["created_at"]["max"]) / 2
        for label, query in queries(size, middle).items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await client.get(f"/v1/workflows/logs?{query}", headers=auth)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
            figures[label] = statistics.median(times)
        return figures


def table(results: dict[int, dict[str, float]]) -> str:
    sizes = list(results)
    rows = list(next(iter(results.values())))
    lines = ["| query (ms, median) | " + " | ".join(f"{s:,} runs" for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(f"{results[s][row]:.1f}" for s in sizes) + " |")
    return "\n".join(lines)


def run(sizes: list[int], repeat: int) -> dict[int, dict[str, float]]:
    return {size: asyncio.run(measure(size, repeat)) for size in sizes}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.difysim.bench_logs", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000,50000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(table(run([int(s) for s in args.sizes.split(",")], args.repeat)))


if __name__ == "__main__":
    main()
