"""Baselines measured in the same run as the scenarios.

(a) broker ceiling: the broker traffic of one checkpoint cycle, with the same client library
    (shared.broker.Broker), the same message bodies and queue kinds, and nothing else — no HTTP, no
    store: request → quorum queue → responder publishes `opened` (topic: reviewer queue + a quorum
    "runs" sink) → reviewer publishes the decision → quorum queue → responder publishes the reply
    (reply queue) and `resolved` (sink). Responder in its own process, like the decider.
(b) the naive peer (bench/naive.py): thread per held call, DB polled every 100 ms.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import completions_in_window, count_calls, cpu_seconds, raise_nofile, summary_ms
from bench.load import NODE_OUTPUT, WorkerPlan, Workers
from bench.naive import NaiveReviewer
from bench.stack import APP_TOKEN, RABBITMQ_URL, database_for
from demo.stack import ROOT, free_port
from shared.broker import Broker
from shared.models import CheckpointEvent, CheckpointRequested, DecisionSubmitted, Reply, Resolution
from shared.runner import run
from shared.topology import Binding, Exchange, Queue, Topology


# ---------------------------------------------------------------------- (a) broker ceiling
def ceiling_topology(ns: str) -> Topology:
    quorum = {"x-queue-type": "quorum"}
    return Topology(
        exchanges=(Exchange(f"{ns}.events", "topic"), Exchange(f"{ns}.decisions", "fanout"),
                   Exchange(f"{ns}.commands", "direct"), Exchange(f"{ns}.dlx", "direct")),
        queues=(Queue(f"{ns}.req", quorum), Queue(f"{ns}.dec", quorum), Queue(f"{ns}.sink", quorum)),
        bindings=(Binding(f"{ns}.commands", f"{ns}.req", "checkpoint.requested"),
                  Binding(f"{ns}.decisions", f"{ns}.dec", ""),
                  Binding(f"{ns}.events", f"{ns}.sink", "checkpoint.opened"),
                  Binding(f"{ns}.events", f"{ns}.sink", "checkpoint.resolved")),
        dlx=f"{ns}.dlx")


def sample_bodies() -> dict[str, bytes]:
    """Bodies of the sizes one cycle really sends."""
    req = CheckpointRequested(app="demo", workflow_run_id=f"c{uuid.uuid4().hex[:8]}-0-1", node_id="draft", round=None,
                              node_output=NODE_OUTPUT, message="Check the draft", app_id="bench-app",
                              workflow_id="bench-wf", user="bench", timeout_s=900, max_rounds=5)
    cp = {"id": str(uuid.uuid4()), "app": "demo", "kind": "http", "workflow_run_id": req.workflow_run_id,
          "node_id": "draft", "round": 1, "status": "open", "mode": "hold", "message": req.message,
          "node_output": NODE_OUTPUT, "app_id": "bench-app", "workflow_id": "bench-wf", "user": "bench",
          "timeout_s": 900.0, "deadline": time.time(), "on_timeout": "abort", "default_output": None, "assignees": [],
          "max_rounds": 5, "created_at": time.time(), "updated_at": time.time(), "resolved_at": None, "action": None,
          "output": None, "feedback": None, "decided_by": None, "reason": None, "decision_channel": None,
          "attach_count": 1}
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="bench-bot", channel="bench")
    res = Resolution(action="approve", checkpoint_id=cp["id"], round=1, output=NODE_OUTPUT, decided_by="bench-bot")
    resolved = {**cp, "status": "resolved", "action": "approve", "output": NODE_OUTPUT, "decided_by": "bench-bot",
                "reason": "decision", "resolved_at": time.time()}
    return {"request": req.to_bytes(), "opened": CheckpointEvent(type="checkpoint.opened", checkpoint=cp).to_bytes(),
            "decision": dec.to_bytes(),
            "reply": Reply(outcome="resolved", checkpoint_id=cp["id"], resolution=res).to_bytes(),
            "resolved": CheckpointEvent(type="checkpoint.resolved", checkpoint=resolved,
                                        decision=dec.model_dump(mode="json")).to_bytes()}


async def _responder(ns: str, ready: Any, stop: Any) -> None:
    bodies = sample_bodies()
    broker = Broker(RABBITMQ_URL, name="ceiling-responder", topology=ceiling_topology(ns), prefetch=64)

    async def on_request(d) -> None:  # the decider's part: announce, then ack
        await broker.publish(f"{ns}.events", "checkpoint.opened", bodies["opened"], correlation_id=d.correlation_id)

    async def on_decision(d) -> None:  # the decider's part: reply to the held call + the event, then ack
        await asyncio.gather(
            broker.publish("", d.reply_to, bodies["reply"], correlation_id=d.correlation_id, persistent=False),
            broker.publish(f"{ns}.events", "checkpoint.resolved", bodies["resolved"], correlation_id=d.correlation_id))

    async def on_sink(d) -> None:  # the poller's part: consume and ack the checkpoint events
        return None

    broker.consume(f"{ns}.req", on_request)
    broker.consume(f"{ns}.dec", on_decision)
    broker.consume(f"{ns}.sink", on_sink)
    await broker.start(wait_s=30)
    ready.set()
    # `stop` is a multiprocessing.Event set by the parent process: it cannot be awaited, so it is polled
    while not stop.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await broker.close(drain_s=2)


def _responder_main(ns: str, ready: Any, stop: Any) -> None:
    from shared.logs import setup_logging

    setup_logging("WARNING", "console", "bench-ceiling")
    run(_responder(ns, ready, stop))  # the services' event loop (shared.runner.run)


async def broker_ceiling(*, concurrency: int, duration_s: float, warmup_s: float, log=print) -> dict[str, Any]:
    ns = f"c{uuid.uuid4().hex[:10]}"
    bodies = sample_bodies()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_responder_main, args=(ns, ready, stop), daemon=True)
    proc.start()
    topo = ceiling_topology(ns)
    broker = Broker(RABBITMQ_URL, name="ceiling-driver", topology=topo, prefetch=2000)
    reply_q, review_q = f"{ns}.replies", f"{ns}.reviewer"
    waiting: dict[str, asyncio.Future] = {}

    async def on_reply(d) -> None:
        fut = waiting.get(d.correlation_id or "")
        if fut is not None and not fut.done():
            fut.set_result(time.monotonic())

    async def on_opened(d) -> None:  # the reviewer: decide at once
        await broker.publish(f"{ns}.decisions", "", bodies["decision"], correlation_id=d.correlation_id,
                             reply_to=reply_q)

    broker.consume(reply_q, on_reply, declare=Queue(reply_q, durable=False), exclusive=True, auto_ack=True,
                   prefetch=2000)
    broker.consume(review_q, on_opened, declare=Queue(review_q, durable=False), exclusive=True, auto_ack=True,
                   prefetch=2000, bindings=((f"{ns}.events", "checkpoint.opened"),))
    await broker.start(wait_s=30)
    await asyncio.get_running_loop().run_in_executor(None, ready.wait, 30)
    done: list[float] = []
    lost = 0
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    end = t0 + duration_s
    cpu0 = {"driver": cpu_seconds(mp.current_process().pid or 0), "responder": cpu_seconds(proc.pid)}

    async def worker() -> None:
        nonlocal lost
        while time.monotonic() < end:
            cid = uuid.uuid4().hex
            fut = loop.create_future()
            waiting[cid] = fut
            try:
                await broker.publish(f"{ns}.commands", "checkpoint.requested", bodies["request"], correlation_id=cid,
                                     reply_to=reply_q)
                done.append(await asyncio.wait_for(fut, 30))
            except Exception:
                lost += 1
            finally:
                waiting.pop(cid, None)

    log(f"  {concurrency} cycles in flight, {duration_s:.0f}s")
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), duration_s + 60)
    wall = time.monotonic() - t0
    cpu1 = {"driver": cpu_seconds(mp.current_process().pid or 0), "responder": cpu_seconds(proc.pid)}
    steady = [t for t in done if t0 + warmup_s <= t < end]
    rate = round(len(steady) / max(0.1, duration_s - warmup_s), 1)
    stop.set()
    await broker.delete_topology()
    await broker.close(drain_s=1)
    proc.join(timeout=10)
    log(f"    → {rate} broker-only cycles/s ({rate * 7:.0f} messages/s), lost {lost}")
    return {"cycles_per_s": rate, "messages_per_cycle": 7, "cycles": len(done), "lost": lost,
            "concurrency": concurrency, "duration_s": duration_s,
            "cores_used": {k: round(((cpu1[k] or 0) - (cpu0[k] or 0)) / wall, 2) for k in cpu0},
            "message_bytes": {k: len(v) for k, v in bodies.items()}}


# ---------------------------------------------------------------------- (b) the naive peer
class NaivePeer:
    def __init__(self, db_kind: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="hitl-naive-")
        self.db_kind = db_kind
        self.url, self._drop = database_for(db_kind, Path(self.tmp.name))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> NaivePeer:
        log = open(Path(self.tmp.name) / "naive.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.naive", "--port", str(self.port), "--db", self.url,
                                      "--token", APP_TOKEN], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=lambda: raise_nofile(65536))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the naive peer did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drop()
        self.tmp.cleanup()


async def naive_cycles(db_kind: str, *, mode: str, clients: int, concurrency: int = 32, rate: float = 200,
                       duration_s: float = 10, warmup_s: float = 2) -> dict[str, Any]:
    with NaivePeer(db_kind) as peer:
        reviewer = NaiveReviewer(peer.url).start()
        prefix = f"n{mode[0]}{uuid.uuid4().hex[:8]}-"
        plans = [WorkerPlan(worker=w, urls=[peer.base_url], token=APP_TOKEN, run_prefix=prefix, mode=mode,
                            concurrency=max(1, concurrency // clients), duration_s=duration_s, rate=rate / clients,
                            read_timeout_s=120, drain_s=30) for w in range(clients)]
        workers = Workers(plans)
        workers.start()
        cpu0, t_cpu = cpu_seconds(peer.proc.pid), time.monotonic()
        t_go = workers.go_now()
        records = await workers.results(timeout_s=duration_s + 90)
        cores = round(((cpu_seconds(peer.proc.pid) or 0) - (cpu0 or 0)) / (time.monotonic() - t_cpu), 2)
        reviewer.close()
    counts = count_calls(records)
    latencies = [r[2] - reviewer.decided_at[r[0]] for r in records
                 if r[3] == 200 and r[0] in reviewer.decided_at and r[2] is not None]
    return {"mode": mode, "cycles_per_s": round(completions_in_window(records, t_go + warmup_s, t_go + duration_s)
                                                 / max(0.1, duration_s - warmup_s), 1),
            "counts": counts.as_dict(), "decision_to_release": summary_ms(latencies),
            "cycle": summary_ms([r[2] - r[1] for r in records if r[3] == 200 and r[2] is not None]),
            "server_cores_used": cores, "client_failures": workers.failures}


async def naive_held(db_kind: str, *, steps: list[int], hold_s: float, clients: int, log=print) -> dict[str, Any]:
    from bench.scenarios import held_step

    results = []
    with NaivePeer(db_kind) as peer:
        reviewer = NaiveReviewer(peer.url)
        reviewer.auto = False
        reviewer.start()

        def opened_count(prefix: str) -> int:
            return sum(1 for r in list(reviewer.opened) if r.startswith(prefix))

        async def decide(prefix: str) -> None:
            reviewer.prefixes.add(prefix)

        try:
            for n in steps:
                r = await held_step([peer.base_url], n, pid=peer.proc.pid, namespace=None, hold_s=hold_s,
                                    clients=clients, decide=decide, opened_count=opened_count, settle_timeout_s=hold_s,
                                    log=log)
                results.append(r)
                if not r["all_answered_200"] or peer.proc.poll() is not None:
                    break
                await asyncio.sleep(2)
        finally:
            reviewer.close()
    good = [r["n"] for r in results if r["all_answered_200"]]
    return {"steps": results, "max_n_answered": max(good) if good else 0,
            "rss_at_max_mb": next((r["rss_held_mb"] for r in results if good and r["n"] == max(good)), None)}


async def naive_all(db_kind: str, *, concurrency: int, duration_s: float, rate: float, latency_duration_s: float,
                    held_steps: list[int], hold_s: float, clients: int, held_clients: int, run_latency: bool,
                    run_held: bool, run_throughput: bool, log=print) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if run_throughput:
        r = await naive_cycles(db_kind, mode="closed", clients=clients, concurrency=concurrency,
                               duration_s=duration_s, warmup_s=min(2.0, duration_s / 3))
        log(f"  throughput: {r['cycles_per_s']} cycles/s, lost {r['counts']['lost']}")
        out["throughput"] = r
    if run_latency:
        r = await naive_cycles(db_kind, mode="open", clients=1, rate=rate, duration_s=latency_duration_s,
                               warmup_s=min(2.0, latency_duration_s / 4))
        log(f"  latency at {rate:.0f}/s: decision→release p50 {r['decision_to_release']['p50_ms']} ms, "
            f"p99 {r['decision_to_release']['p99_ms']} ms, lost {r['counts']['lost']}")
        out["latency"] = r
    if run_held:
        out["held"] = await naive_held(db_kind, steps=held_steps, hold_s=hold_s, clients=held_clients, log=log)
    return out
