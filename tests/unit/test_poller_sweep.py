"""The poller's listing sweep against the simulator in-process (bulk runs, its logs listing), on a real
SQLite store and the in-memory broker: statuses learned 100 runs a request, polls by id only for what
changed or what the listing cannot show, one poller per app's listing."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from services.poller.listing import plan_windows
from services.poller.service import PollerService, next_pass_in
from services.poller.sweep import PassStats
from shared.dify import DifyClient
from shared.settings import AppConfig
from shared.store import Database
from shared.store import runs as store
from tests.conftest import make_settings, memory_broker, verifier
from tests.difysim.bulk_schedule import finish
from tests.difysim.testing import echo_graph, in_process, register

HOUR = 3600


@dataclass
class Rig:
    service: PollerService
    http: httpx.AsyncClient
    db: Database

    async def bulk(self, count: int, **body: Any) -> list[dict]:
        answer = await self.http.post("/_sim/apps/app/bulk-runs", json={"count": count, **body})
        assert answer.status_code == 201, answer.text
        return answer.json()["runs"]

    async def requests(self) -> list[str]:
        """The service-API calls the simulator answered since the last look (then forgets them)."""
        rows = (await self.http.get("/_sim/requests")).json()["requests"]
        await self.http.delete("/_sim/requests")
        return [("logs" if "/workflows/logs" in r["path"] else "get_run" if "/workflows/run/" in r["path"]
                 else r["path"]) for r in rows]

    async def sweep(self, owner_of=None):
        stats = await (owner_of or self.service).sweeps["demo"].one_pass()
        await self.service.broker.drain()
        return stats

    async def poll_due(self) -> int:
        """Poll by id every run that is due, as the polling loop would."""
        due = self.service.recorder.due(self.service.owner, 10_000)
        await asyncio.gather(*(self.service.poll_one(run) for run in due))
        await self.service.broker.drain()
        return len(due)

    def runs(self) -> dict[str, dict]:
        with self.db.read() as conn:
            rows, _ = store.listing(conn, apps={"demo"}, limit=100_000)
        return {r["id"]: r for r in rows}


def settings_for(sqlite_url: str, key: str, **overrides):
    app = AppConfig(name="demo", checkpoint_token="cp-test-token-0001", dify_base_url="http://difysim",
                    dify_api_key=key)
    values = dict(apps=[app], discovery_lookback_s=2 * HOUR, dify_rate_per_s=1000, capture_grace_s=0)
    return make_settings(sqlite_url, **{**values, **overrides})


@contextlib.asynccontextmanager
async def rig(sqlite_url, graph: dict | None = None, config=None, **overrides):
    async with in_process(config) as http:
        key = (await register(http, graph or echo_graph()))["Authorization"].split()[1]
        settings = settings_for(sqlite_url, key, **overrides)
        db = Database(sqlite_url)
        db.migrate()
        broker = memory_broker(settings)
        service = PollerService(settings, db, broker, verifier(settings))
        await _bind(service, http)
        await broker.start()
        try:
            yield Rig(service, http, db)
        finally:
            await broker.close()
            for client in service.clients.values():
                await client.aclose()
            db.dispose()


async def _bind(service: PollerService, http: httpx.AsyncClient) -> None:
    """Point the service's Dify client at the in-process simulator."""
    app = service.settings.app("demo")
    assert app is not None
    await service.clients["demo"].aclose()
    client = DifyClient(app, rate_per_s=1000, max_concurrency=8, transport=http._transport,
                        direct_share=service.settings.direct_poll_share)
    service.clients["demo"] = client
    service.sweeps["demo"].client = client
    service.reattacher.clients = service.clients


async def test_a_pass_discovers_live_runs_a_page_per_hundred_and_polls_none_by_id(sqlite_url):
    async with rig(sqlite_url) as r:
        made = await r.bulk(450, created_at_spread_s=HOUR, finish_in_s=[HOUR, HOUR])
        await r.requests()
        stats = await r.sweep()
        runs = r.runs()
        assert set(runs) == {m["id"] for m in made}
        assert all(run["status"] == "running" and run["next_poll_at"] is None for run in runs.values())
        assert await r.requests() == ["logs"] * 5 and stats.pages == 5
        assert await r.poll_due() == 0  # nothing to poll by id: the listing watches them
        second = await r.sweep()
        calls = await r.requests()
        # head + the windows of 450 live runs (cut every 1000 runs / 600 s): about one page per hundred
        assert set(calls) == {"logs"} and len(calls) == second.pages <= 1 + 450 // 100 + second.windows
        # every row met once; the few newest runs are in the head, the others in the windows
        assert second.changed == 0 and second.rows == 450 and 440 <= second.live <= 450


async def test_runs_that_finish_are_updated_from_their_rows_and_polled_once_for_their_outputs(sqlite_url):
    async with rig(sqlite_url) as r:
        waiting = await r.bulk(300, created_at_spread_s=HOUR, finish_in_s=[HOUR, HOUR], seed=1)
        ending = await r.bulk(40, created_at_spread_s=HOUR, finish_in_s=[HOUR, HOUR], seed=2,
                              statuses={"succeeded": 1, "failed": 1})
        await r.sweep()
        for m in ending:  # they end now, between two passes
            finish(r.http.sim.store.runs[m["id"]], m["status"], time.time())
        await r.requests()
        stats = await r.sweep()
        runs = r.runs()
        assert stats.changed == 40
        assert {runs[m["id"]]["status"] for m in ending} == {"succeeded", "failed"}
        assert all(runs[m["id"]]["status"] == m["status"] for m in ending)
        assert all(runs[m["id"]]["status"] == "running" for m in waiting)
        assert await r.poll_due() == 40  # one poll by id each, for the outputs the row lacks
        assert (await r.requests()).count("get_run") == 40
        assert await r.poll_due() == 0
        events = [key for _, key, _, _ in r.service.broker.published]
        assert events.count("run.status.failed") == sum(m["status"] == "failed" for m in ending)


async def test_a_window_of_few_live_runs_among_many_finished_ones_is_polled_by_id(sqlite_url):
    async with rig(sqlite_url) as r:
        await r.bulk(600, created_at_spread_s=600, finish_in_s=[0, 0], seed=3)  # finished, one window's worth
        live = await r.bulk(2, created_at_spread_s=600, finish_in_s=[HOUR, HOUR], seed=4)
        await r.sweep()
        await r.requests()
        stats = await r.sweep()
        assert stats.by_id == 2 - sum(1 for m in live if m["id"] in stats.seen)
        assert stats.pages <= 3  # head + the window's first page: not its 6 pages
        assert await r.poll_due() == stats.by_id


async def test_a_live_run_the_listing_does_not_show_is_polled_by_id_from_then_on(sqlite_url):
    async with rig(sqlite_url) as r:
        await r.bulk(20, created_at_spread_s=HOUR, finish_in_s=[HOUR, HOUR])
        await r.sweep()
        ghost = str(uuid.uuid4())  # tracked with a creation time, but Dify has no row for it (cleaned up)
        with r.db.write() as conn:
            store.ensure(conn, "demo", ghost, "track", created_at=time.time() - HOUR / 2, next_poll_at=None)
        stats = await r.sweep()
        assert stats.unseen == 1
        run = r.runs()[ghost]
        assert run["unlisted"] and run["next_poll_at"] is not None
        assert await r.poll_due() == 1  # GET answers 404: backed off, and `not_found` after five


async def test_live_runs_older_than_the_listing_lookback_are_polled_by_id(sqlite_url):
    async with rig(sqlite_url, listing_lookback_s=600) as r:
        old = await r.bulk(5, created_at_spread_s=1, finish_in_s=[HOUR, HOUR])
        with r.db.write() as conn:
            for m in old:
                store.ensure(conn, "demo", m["id"], "track", created_at=time.time() - HOUR, next_poll_at=None)
        await r.sweep()
        assert all(r.runs()[m["id"]]["unlisted"] for m in old)
        assert await r.poll_due() == 5


async def test_one_poller_at_a_time_walks_an_apps_listing(sqlite_url):
    async with rig(sqlite_url) as r:
        await r.bulk(10, created_at_spread_s=60, finish_in_s=[HOUR, HOUR])
        other = PollerService(r.service.settings, r.db, r.service.broker, verifier(r.service.settings))
        other.owner = other.sweeps["demo"].owner = "another-poller"
        await _bind(other, r.http)
        assert r.service.recorder.claim_sweep("demo", r.service.owner)
        assert await other.sweeps["demo"].one_pass() is None
        await r.service.sweeps["demo"].release()
        assert await r.sweep(other) is not None
        for client in other.clients.values():
            await client.aclose()


async def test_in_per_run_mode_the_listing_only_discovers_and_every_live_run_is_polled_by_id(sqlite_url):
    async with rig(sqlite_url, status_source="per_run") as r:
        await r.bulk(30, created_at_spread_s=HOUR, finish_in_s=[HOUR, HOUR])
        stats = await r.sweep()
        assert stats.windows == 0 and len(r.runs()) == 30
        assert await r.poll_due() == 30


def test_windows_hold_at_most_so_many_runs_and_seconds_and_nothing_outside_them():
    live = [(1000.0 + i, f"r{i}") for i in range(25)] + [(5000.0, "late")]
    windows = plan_windows(live, max_runs=10, max_span_s=100)
    assert [len(w.ids) for w in windows] == [10, 10, 5, 1]
    assert windows[-1].ids == {"late"} and windows[-1].after == 4995 and windows[-1].before == 5005
    assert all(w.after <= min(int(i[1:]) + 1000 for i in w.ids if i != "late") for w in windows[:3])


def test_passes_come_quickly_while_runs_change_and_back_off_while_nothing_does(sqlite_url):
    settings = settings_for(sqlite_url, "app-x", sweep_interval_s=2, discovery_interval_s=10)
    busy, quiet = PassStats(live=100, changed=3), PassStats(live=100)
    assert next_pass_in(settings, busy, 10) == 2
    assert [next_pass_in(settings, quiet, last) for last in (2, 4, 8, 10)] == [4, 8, 10, 10]
    assert next_pass_in(settings, PassStats(live=0, changed=5), 2) == 10  # nothing live: discovery only
    assert next_pass_in(settings, None, 2) == 10  # a failed pass (or another poller's lease)
    per_run = settings_for(sqlite_url, "app-x", status_source="per_run")
    assert next_pass_in(per_run, busy, 2) == per_run.discovery_interval_s
