"""A 3-node RabbitMQ cluster under load: kill -9 of the node leading the work queues, then of a second
node (the majority lost), then both brought back — in cycles.

The product (simulator, decider, poller, ingest) is given all three node URLs; its quorum queues get
three replicas. With one node gone, the queues elect a new leader on a survivor, the processes that
were connected to the dead node move to another, re-declare, re-attach their consumers and re-send
what was not confirmed; nothing may be lost or decided twice. With two nodes gone no queue has a
majority: RabbitMQ stops confirming publishes, so ingest answers every checkpoint call and every
decision 503 (Dify and reviewers retry) — nothing is accepted that could not be stored. Once the
nodes are back, work resumes by itself, without restarting a process.
"""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
import uuid

import pytest

from shared.broker import PublishNotConfirmed
from shared.topology import Names, Queue, Topology
from tests.faults.clusters import RabbitCluster
from tests.faults.conftest import SESSION_DIR, scale_factor, scaled
from tests.faults.helpers import StoreView, open_broker, ready
from tests.faults.loadrun import Load

TARGETS = ("ingest", "decider", "poller")
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def cluster():
    """The node logs are kept beside the processes' (FAULTS_WORKDIR/<session>/test_rabbitmq_cluster)."""
    nodes = RabbitCluster(3)
    try:
        nodes.start()
    except FileNotFoundError as exc:
        nodes.stop()
        pytest.skip(f"no RabbitMQ server here to build a cluster from ({exc})")
    except (RuntimeError, subprocess.SubprocessError):
        nodes.stop()
        raise
    try:
        yield nodes
    finally:
        logs = SESSION_DIR / "test_rabbitmq_cluster"
        logs.mkdir(parents=True, exist_ok=True)
        nodes.stop(keep_logs_in=logs)


async def publish_confirmed(broker, queue: str, timeout_s: float) -> bool:
    try:
        await broker.publish("", queue, b"{}", message_id=uuid.uuid4().hex, timeout_s=timeout_s)
        return True
    except PublishNotConfirmed:
        return False


def test_losing_the_leader_node_then_the_majority_of_a_3_node_cluster_loses_nothing(cluster, stacks, row):
    cycles = scaled(3, minimum=1)
    warmup_s, outage_s = 3.0, max(5.0, 8.0 * min(1.0, scale_factor()))
    stack = stacks("cluster", rabbitmq_url=cluster.urls)
    names = Names(stack.env["HITL_NAMESPACE"])
    work_queue = names.checkpoints_queue
    store = StoreView(stack.db_url)
    started = time.monotonic()

    async def scenario():
        bot = await open_broker(stack)  # the reviewer's fallback, a bot on the decisions exchange (all nodes)
        probe_queue = f"{names.namespace}.probe"
        probe = await open_broker_with(stack, Topology((), (Queue(probe_queue, {
            "x-queue-type": "quorum", "x-quorum-initial-group-size": 3}),), (), ""))
        load = Load(stack, store, bot)
        load.start()
        report = {"recovery_s": [], "majority_lost": [], "killed": []}
        await asyncio.sleep(warmup_s)
        baseline = [load.answered[i] - load.begun[i] for i in load.answered]
        report["baseline_latency_s"] = round(statistics.median(baseline), 2) if baseline else None
        for cycle in range(cycles):
            # 1. the node leading the work queue, kill -9
            leader = await asyncio.to_thread(cluster.leader_of, work_queue)
            assert leader is not None, f"no leader found for {work_queue}"
            await asyncio.to_thread(leader.kill9)
            fault = load.mark(f"kill leader {leader.name}")
            recovered = await load.wait_recovered(fault.at, 90)
            report["recovery_s"].append(("leader killed", recovered))
            report["killed"].append(leader.name)
            print(f"[cluster] cycle {cycle}: killed leader {leader.name}, recovered in {recovered} s", flush=True)
            await asyncio.sleep(1.0)
            # 2. a second node: the majority of every queue is gone
            second = await asyncio.to_thread(cluster.leader_of, work_queue)
            if second is None or not second.alive():  # not re-elected yet, or the listing is stale
                second = next(n for n in cluster.nodes if n.alive())
            await asyncio.to_thread(second.kill9)
            lost = load.mark(f"kill second {second.name}")
            await asyncio.sleep(min(2.0, outage_s / 2))
            confirmed = await publish_confirmed(probe, probe_queue, timeout_s=3)
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - lost.at)))
            during = load.since(lost)
            decisions_during = dict(load.reviewer.statuses)
            report["majority_lost"].append({"publish_confirmed": confirmed, "answers": dict(during),
                                            "answered_200": during.get(200, 0), "answered_503": during.get(503, 0)})
            print(f"[cluster] cycle {cycle}: majority lost {outage_s:.0f} s: probe publish confirmed={confirmed}, "
                  f"answers {dict(during)}, decisions so far {decisions_during}", flush=True)
            # 3. both back (at once: the cluster comes back as it would after a rack's power returns)
            back = time.monotonic()
            await asyncio.gather(asyncio.to_thread(cluster.restart, leader), asyncio.to_thread(cluster.restart, second))
            nodes_back_s = round(time.monotonic() - back, 1)
            recovered = await load.wait_recovered(time.monotonic(), 120)
            report["recovery_s"].append(("majority back", recovered))
            report.setdefault("nodes_restart_s", []).append(nodes_back_s)
            print(f"[cluster] cycle {cycle}: nodes back in {nodes_back_s} s, work resumed {recovered} s later",
                  flush=True)
            await asyncio.sleep(1.0)
        report["probe_after"] = await publish_confirmed(probe, probe_queue, timeout_s=30)
        tally, _unfinished = await load.stop()
        report["decisions"] = dict(load.reviewer.statuses)
        await load.aclose()
        await probe.delete_topology()
        await probe.close()
        await bot.close()
        return tally, report

    tally, report = asyncio.run(scenario())
    recoveries = [r for _, r in report["recovery_s"]]
    worst = max((r if r is not None else 999.0) for r in recoveries)
    same_pids = all(stack.procs[k].poll() is None for k in TARGETS)
    row("RabbitMQ 3 nodes: leader, then majority killed", **tally.counts(), seconds=time.monotonic() - started,
        cycles=cycles, worst_recovery_s=worst, **report)
    print(f"\ncluster: {report}\nproblems:\n  " + "\n  ".join(tally.problems[:12]))
    assert same_pids and all(ready(stack, k) for k in TARGETS), "a process died or is not ready at the end"
    assert None not in recoveries, f"work did not resume after a fault: {report['recovery_s']}"
    for episode in report["majority_lost"]:
        assert episode["publish_confirmed"] is False, "a publish was confirmed without a majority"
        assert episode["answered_503"] > 0, f"no 503 while the majority was lost: {episode}"
    assert report["probe_after"], "publishes are not confirmed again after the nodes came back"
    assert tally.lost == 0 and tally.duplicated == 0, tally.problems[:20]
    assert tally.errors == 0, tally.problems[:20]
    store.close()


async def open_broker_with(stack, topology: Topology):
    from shared.broker import Broker

    broker = Broker(stack.env["HITL_RABBITMQ_URL"], name="faults-probe", topology=topology)
    await broker.start(wait_s=30)
    return broker
