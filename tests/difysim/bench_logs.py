"""How fast GET /v1/workflows/logs answers with many runs: python -m tests.difysim.bench_logs [--sizes 5000,20000,50000]

Each size gets a fresh simulator — in-process by default (httpx ASGI transport: no sockets, so the
figures are the simulator's own cost, JSON included), or with `--process` its own
`python -m tests.difysim` over loopback HTTP — then N finished bulk runs spread over a day (status
mix 8:1:1 succeeded/failed/stopped, 10 end users), and every query below is timed `--repeat` times;
the table shows the median in milliseconds. It prints figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx

from .process import running_simulator
from .testing import echo_graph, in_process, register

LIMIT = 100


def queries(size: int, middle: float) -> dict[str, str]:
    deep = max(1, size // LIMIT)
    after = datetime.fromtimestamp(middle, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "page 1": f"limit={LIMIT}&page=1",
        "last page": f"limit={LIMIT}&page={deep}",
        "status=failed, page 1": f"limit={LIMIT}&status=failed",
        "status=succeeded, its last page": f"limit={LIMIT}&status=succeeded&page={max(1, deep * 8 // 10)}",
        "created_at__after (half), page 1": f"limit={LIMIT}&created_at__after={after}",
        "session id, page 1": f"limit={LIMIT}&created_by_end_user_session_id=bulk-user-3",
        "keyword (scans), page 1": f"limit={LIMIT}&keyword=bulk-user-3",
    }


@contextlib.asynccontextmanager
async def simulator(own_process: bool) -> AsyncIterator[httpx.AsyncClient]:
    if not own_process:
        async with in_process() as client:
            yield client
        return
    with running_simulator() as url:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            yield client


async def measure(size: int, repeat: int, own_process: bool = False) -> dict[str, float]:
    async with simulator(own_process) as client:
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


def run(sizes: list[int], repeat: int, own_process: bool = False) -> dict[int, dict[str, float]]:
    return {size: asyncio.run(measure(size, repeat, own_process)) for size in sizes}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.difysim.bench_logs", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000,50000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--process", action="store_true", help="a simulator process per size, over loopback HTTP")
    args = parser.parse_args()
    print(table(run([int(s) for s in args.sizes.split(",")], args.repeat, args.process)))


if __name__ == "__main__":
    main()
