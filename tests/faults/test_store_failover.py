"""PostgreSQL goes away under load: a plain restart (`pg_ctl restart -m fast`: every open transaction
rolled back, every connection closed), and a failover — the primary killed with SIGKILL, its
synchronous streaming standby promoted (`pg_ctl promote`).

The product is given libpq's multi-host URL (primary, standby; `target_session_attrs=read-write`):
no process is restarted or reconfigured. A transaction that loses its connection is run again at
once on a fresh one, or its message waits in a delay queue until the store takes writes again;
HTTP reads answer 503 meanwhile. Every call must still end with the one answer the store holds
(the new primary, after the failover), and no checkpoint may have two applied decisions.

Private servers (clusters.py), never the machine's shared PostgreSQL."""
from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.faults.clusters import PgPair, PgSingle, pg_bin
from tests.faults.conftest import scale_factor, scaled
from tests.faults.helpers import StoreView, ready
from tests.faults.loadrun import Load

TARGETS = ("ingest", "decider", "poller")
pytestmark = pytest.mark.timeout(900)
WARMUP_S = 3.0


def need_pg_bin():
    found = pg_bin()
    if found is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: apt-get install postgresql")
    return found


def store_retries(stack) -> int:
    """Transactions the decider ran again at once after their connection died (hitl_store_retries_total)."""
    try:
        text = httpx.get(stack.url("decider") + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1
    found = re.search(r"^hitl_store_retries_total (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def verdict(tally, stack) -> None:
    assert all(stack.procs[k].poll() is None for k in TARGETS), "a process died instead of reconnecting"
    assert all(ready(stack, k) for k in TARGETS), "a process is not ready after the store came back"
    assert tally.lost == 0 and tally.duplicated == 0, tally.problems[:20]
    assert tally.errors == 0, tally.problems[:20]


@pytest.fixture
def pg_single():
    need_pg_bin()
    single = PgSingle()
    try:
        single.start()
        yield single
    finally:
        single.stop()


def test_a_postgresql_restart_mid_transaction_loses_nothing(pg_single, stacks, row):
    restarts = scaled(4, minimum=1)
    started = time.monotonic()
    stack = stacks("pg-restart", database_url=pg_single.url())
    store = StoreView(stack.db_url)

    async def scenario():
        load = Load(stack, store)
        load.start()
        await asyncio.sleep(WARMUP_S)
        recoveries = []
        for _ in range(restarts):
            fault = load.mark("restart")
            await asyncio.to_thread(pg_single.server.restart)
            recoveries.append(await load.wait_recovered(fault.at, 90))
            print(f"[pg-restart] restarted, recovered in {recoveries[-1]} s", flush=True)
            await asyncio.sleep(2.0)
        tally, _ = await load.stop()
        await load.aclose()
        return tally, recoveries

    tally, recoveries = asyncio.run(scenario())
    retried = store_retries(stack)
    row("PostgreSQL restart mid-transaction", **tally.counts(), seconds=time.monotonic() - started,
        restarts=restarts, recovery_s=recoveries, worst_recovery_s=max(r or 999.0 for r in recoveries),
        transactions_retried_at_once=retried)
    print(f"\npg-restart: recoveries {recoveries}, decider transactions retried at once {retried}, "
          f"problems: {tally.problems[:10]}")
    assert None not in recoveries, f"work did not resume after a restart: {recoveries}"
    verdict(tally, stack)
    store.close()


@pytest.fixture
def pg_pair():
    need_pg_bin()
    pair = PgPair(synchronous=True)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()


def test_killing_the_primary_and_promoting_its_standby_loses_and_duplicates_nothing(pg_pair, stacks, row):
    promote_after_s = 2.0  # what an operator or CloudNativePG takes to decide the primary is gone (a few s)
    started = time.monotonic()
    stack = stacks("pg-failover", database_url=pg_pair.url())
    store = StoreView(stack.db_url)
    load_s = max(4.0, 10.0 * min(1.0, scale_factor()))

    async def scenario():
        load = Load(stack, store)
        load.start()
        await asyncio.sleep(WARMUP_S)
        before = len(load.answered)
        killed = load.mark("primary killed")
        await asyncio.to_thread(pg_pair.primary.kill9)
        await asyncio.sleep(promote_after_s)
        promoted = load.mark("standby promoted")
        await asyncio.to_thread(pg_pair.promote)
        since_promote = await load.wait_recovered(promoted.at, 120)
        since_kill = load.recovery_s(killed.at)
        print(f"[pg-failover] {before} answered before the kill; work resumed {since_promote} s after the "
              f"promotion ({since_kill} s after the kill); answers meanwhile {dict(load.since(killed))}", flush=True)
        await asyncio.sleep(load_s)
        tally, _ = await load.stop()
        await load.aclose()
        return tally, {"recovery_after_promote_s": since_promote, "recovery_after_kill_s": since_kill,
                       "answers_during": dict(load.since(killed) - load.since(promoted))}

    tally, report = asyncio.run(scenario())
    in_recovery = pg_pair.standby.sql("SELECT pg_is_in_recovery()")
    retried = store_retries(stack)
    row("PostgreSQL failover: primary kill -9, standby promoted", **tally.counts(),
        seconds=time.monotonic() - started, worst_recovery_s=report["recovery_after_kill_s"],
        transactions_retried_at_once=retried, **report)
    print(f"\npg-failover: {report}, decider transactions retried at once {retried}, problems: {tally.problems[:10]}")
    assert in_recovery == "f", "the standby was not promoted"
    assert report["recovery_after_promote_s"] is not None, "work did not resume on the new primary"
    verdict(tally, stack)
    store.close()
