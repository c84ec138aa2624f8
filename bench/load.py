"""The load generator: simulated Dify HTTP nodes (async httpx, in worker processes) and a reviewer
bot (a Broker consumer of `checkpoint.opened` that publishes a decision to the decisions exchange
as soon as each checkpoint appears).

Every loop here is bounded twice: by a number of calls and by a deadline.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import queue as queue_mod
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.common import CallRecord, raise_nofile
from shared.broker import Broker
from shared.broker.signing import BOT_HEADER, BOT_SIGNATURE_HEADER, signature
from shared.models import DecisionSubmitted
from shared.runner import run
from shared.topology import Names, Queue, build_topology

NODE_OUTPUT = ("A draft of the release notes: the new API, two fixes, one deprecation. " * 4).strip()


def checkpoint_body(run_id: str, *, read_timeout_s: float, timeout_s: float) -> bytes:
    """What the demo workflow's HTTP node sends (README, "The checkpoint node in a real Dify")."""
    return json.dumps({
        "workflow_run_id": run_id, "app_id": "bench-app", "workflow_id": "bench-wf", "user": "bench",
        "node_id": "draft", "node_output": NODE_OUTPUT, "message": "Check the draft",
        "read_timeout_s": read_timeout_s, "timeout_s": timeout_s, "on_timeout": "abort"}).encode()


# ---------------------------------------------------------------------- reviewer bot
class Reviewer:
    """Decides every `checkpoint.opened` it sees (approve), once per checkpoint. With `auto=False`
    it only records them; `decide_all()` decides what it has seen (the held-calls scenario)."""

    def __init__(self, rabbitmq_url: str, namespace: str, *, auto: bool = True, prefetch: int = 2000) -> None:
        self.names = Names(namespace)
        from bench.stack import BENCH_KEY

        self.broker = Broker(rabbitmq_url, name="bench-reviewer", topology=build_topology(self.names),
                             prefetch=prefetch, handler_threads=1, signing_key=BENCH_KEY.encode())
        self.queue = f"{namespace}.bench.reviewer.{uuid.uuid4().hex[:6]}"
        self.broker.consume(self.queue, self._on_opened, declare=Queue(self.queue, durable=False), exclusive=True,
                            auto_ack=True, bindings=((self.names.events, "checkpoint.opened"),))
        self.auto = auto
        self.opened: dict[str, str] = {}  # workflow_run_id -> checkpoint id
        self.opened_at: dict[str, float] = {}
        self.decided_at: dict[str, float] = {}  # workflow_run_id -> monotonic time the decision was published
        self.duplicate_events = 0
        self.publish_failures = 0
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        await self.broker.start(wait_s=30)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.broker.close(drain_s=2)

    async def _on_opened(self, delivery) -> None:
        cp = json.loads(delivery.body)["checkpoint"]
        run_id = cp["workflow_run_id"]
        if run_id in self.opened:
            self.duplicate_events += 1  # at-least-once events: a bot decides each checkpoint once
            return
        self.opened[run_id] = cp["id"]
        self.opened_at[run_id] = time.monotonic()
        if self.auto:
            await self.decide(run_id)

    async def decide(self, run_id: str) -> None:
        from bench.stack import BENCH_BOT, BENCH_BOT_SECRET, BENCH_REVIEWER

        dec = DecisionSubmitted(checkpoint_id=self.opened[run_id], action="approve", actor=BENCH_REVIEWER,
                                channel="bench")
        body = dec.to_bytes()
        headers = {BOT_HEADER: BENCH_BOT, BOT_SIGNATURE_HEADER: signature(BENCH_BOT_SECRET.encode(), body)}
        self.decided_at[run_id] = time.monotonic()
        try:
            await self.broker.publish(self.names.decisions, "bench", body, message_id=dec.id, timeout_s=30,
                                      headers=headers, sign=False)
        except Exception:
            self.publish_failures += 1

    async def decide_all(self, run_ids: list[str] | None = None, batch: int = 500) -> None:
        ids = [r for r in (run_ids or list(self.opened)) if r not in self.decided_at]
        for i in range(0, len(ids), batch):
            await asyncio.gather(*(self.decide(r) for r in ids[i:i + batch]))


# ---------------------------------------------------------------------- simulated Dify nodes
@dataclass
class WorkerPlan:
    """What one client process does. mode: closed (C calls in flight back-to-back until the
    deadline or max_calls), open (a call every 1/rate s), held (n calls at once, held)."""

    worker: int
    urls: list[str]
    token: str
    run_prefix: str
    mode: str
    concurrency: int = 32
    duration_s: float = 10.0
    max_calls: int = 1_000_000
    rate: float = 100.0
    n: int = 0
    read_timeout_s: float = 120.0
    timeout_s: float = 900.0
    drain_s: float = 30.0
    ramp_per_s: float = 2000.0  # held: how fast the calls are opened
    extra: dict[str, Any] = field(default_factory=dict)


async def _run_plan(plan: WorkerPlan, go: Any) -> list[CallRecord]:
    import httpx

    records: list[CallRecord] = []
    inflight: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {plan.token}", "Content-Type": "application/json"}
    conns = (plan.n if plan.mode == "held" else plan.concurrency if plan.mode == "closed"
             else max(64, int(plan.rate * 2)))
    timeout = httpx.Timeout(connect=60.0, read=plan.read_timeout_s + 30, write=30.0, pool=plan.read_timeout_s + 30)
    counter = 0

    async def call(client: httpx.AsyncClient, url: str) -> None:
        nonlocal counter
        counter += 1
        run_id = f"{plan.run_prefix}{plan.worker}-{counter}"
        body = checkpoint_body(run_id, read_timeout_s=plan.read_timeout_s, timeout_s=plan.timeout_s)
        t0 = time.monotonic()
        inflight[run_id] = t0
        try:
            r = await client.post(url + "/v1/checkpoints", content=body, headers=headers)
            t1 = time.monotonic()
            action = cp = None
            if r.status_code == 200:
                data = r.json()
                action, cp = data.get("action"), data.get("checkpoint_id")
            records.append((run_id, t0, t1, r.status_code, action, cp, None))
        except asyncio.CancelledError:  # still waiting at the hard end of the run: lost, and counted
            records.append((run_id, t0, None, None, None, None, "unanswered: still waiting at the end of the run"))
            raise
        except Exception as exc:  # the call is lost to this node: counted, never hidden
            records.append((run_id, t0, None, None, None, None, f"{type(exc).__name__}: {str(exc)[:80]}"))
        finally:
            inflight.pop(run_id, None)

    # httpx's pool scans its requests × connections on every event: one big pool is quadratic at
    # hundreds in flight, so calls are spread over small clients (a closed-loop node: one each).
    per_client = 1 if plan.mode == "closed" else 16
    n_clients = plan.concurrency if plan.mode == "closed" else max(1, -(-conns // per_client))
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    pool = [httpx.AsyncClient(limits=limits, timeout=timeout) for _ in range(n_clients)]
    try:
        # wait for the parent's start signal (all workers together): `go` is a multiprocessing.Event set
        # by another process, which cannot be awaited, so it is polled (5 ms keeps the start aligned)
        while not go.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        t_start = time.monotonic()
        end = t_start + plan.duration_s
        hard_end = end + plan.drain_s
        if plan.mode == "closed":
            async def loop(i: int) -> None:
                url = plan.urls[i % len(plan.urls)]
                while time.monotonic() < end and counter < plan.max_calls:
                    await call(pool[i], url)
            tasks = [asyncio.create_task(loop(i)) for i in range(plan.concurrency)]
        elif plan.mode == "open":
            tasks = []
            total = min(plan.max_calls, int(plan.rate * plan.duration_s))
            for i in range(total):
                target = t_start + i / plan.rate
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(call(pool[i % n_clients], plan.urls[i % len(plan.urls)])))
        elif plan.mode == "held":
            tasks = []
            for i in range(min(plan.n, plan.max_calls)):
                target = t_start + i / plan.ramp_per_s
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(call(pool[i // per_client], plan.urls[i % len(plan.urls)])))
            hard_end = t_start + plan.read_timeout_s + plan.drain_s
        else:
            raise ValueError(plan.mode)
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, hard_end - time.monotonic()))
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
    finally:
        await asyncio.gather(*(c.aclose() for c in pool), return_exceptions=True)
    for run_id, t0 in list(inflight.items()):
        records.append((run_id, t0, None, None, None, None, "unanswered: still waiting when the run ended"))
    return records


def worker_main(plan: WorkerPlan, out: Any, go: Any) -> None:
    from shared.logs import setup_logging

    setup_logging("WARNING", "console", "bench-client")
    raise_nofile(65536)
    out.put(("ready", plan.worker, None))
    try:
        records = run(_run_plan(plan, go))  # the services' event loop
        out.put(("done", plan.worker, records))
    except BaseException as exc:  # report, never hang the parent
        out.put(("failed", plan.worker, f"{type(exc).__name__}: {exc}"))


class Workers:
    """Client processes running WorkerPlans; the parent's event loop stays free for the reviewer."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        ctx = mp.get_context("spawn")
        self.out = ctx.Queue()
        self.go = ctx.Event()
        self.plans = plans
        self.procs = [ctx.Process(target=worker_main, args=(p, self.out, self.go), daemon=True) for p in plans]
        self.failures: list[str] = []
        self._pending: list[tuple] = []

    def start(self, ready_timeout_s: float = 60) -> None:
        for p in self.procs:
            p.start()
        ready, deadline = 0, time.monotonic() + ready_timeout_s
        while ready < len(self.procs) and time.monotonic() < deadline:
            try:
                kind, worker, payload = self.out.get(timeout=1)
            except queue_mod.Empty:
                continue
            if kind == "ready":
                ready += 1
            else:
                self._pending.append((kind, worker, payload))
        if ready < len(self.procs):
            raise RuntimeError(f"only {ready}/{len(self.procs)} client processes started")

    def go_now(self) -> float:
        self.go.set()
        return time.monotonic()

    async def results(self, timeout_s: float) -> list[CallRecord]:
        loop = asyncio.get_running_loop()
        records: list[CallRecord] = []
        done, deadline = 0, time.monotonic() + timeout_s
        while done < len(self.procs) and time.monotonic() < deadline:
            if self._pending:
                kind, worker, payload = self._pending.pop(0)
            else:
                try:
                    kind, worker, payload = await loop.run_in_executor(None, self.out.get, True, 1.0)
                except queue_mod.Empty:
                    continue
            if kind == "done":
                records += payload
                done += 1
            elif kind == "failed":
                self.failures.append(f"worker {worker}: {payload}")
                done += 1
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        if done < len(self.procs):
            self.failures.append(f"{len(self.procs) - done} client processes did not report in {timeout_s:.0f}s")
        return records
