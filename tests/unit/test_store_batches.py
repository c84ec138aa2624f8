"""Group commit (shared/broker/batches.py over shared/store/batch.py): deliveries that start together
share one transaction, and each still gets what it would get alone — its result, its exception, its
log context — including when the batch cannot commit and every delivery runs again on its own."""
from __future__ import annotations

import asyncio
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from shared.broker import Reject, RetryLater
from shared.broker.batches import StoreBatches
from shared.store import Database, parked
from shared.store.batch import SharedWrites
from shared.store.errors import StoreUnavailable
from shared.store.tables import parked_decisions

who = contextvars.ContextVar("who", default=None)


@pytest.fixture
def store(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    shared = SharedWrites(db)
    yield shared
    db.dispose()


class Counted:
    """SharedWrites.batch, counting the transactions it opens."""

    def __init__(self, store: SharedWrites) -> None:
        self.store, self.opened = store, 0

    def __call__(self):
        self.opened += 1
        return self.store.batch()


def batches_for(store: SharedWrites, opened: Counted, max_items: int = 64) -> StoreBatches:
    broker = SimpleNamespace(executor=ThreadPoolExecutor(max_workers=1))
    return StoreBatches(broker, opened, max_items=max_items, in_flight=1)


def park(store: SharedWrites, message_id: str, *, fail_inside: bool = False, raise_after: Exception | None = None):
    with store.write() as conn:
        parked.park(conn, message_id=message_id, run_id="run", node_id="node", apps=["demo"], actor="alice",
                    decision={"action": "approve"}, now=time.time(), ttl_s=60)
        if fail_inside:
            raise ValueError("a write that failed")
    if raise_after is not None:
        raise raise_after
    return message_id, who.get()


def rows(store: SharedWrites) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(parked_decisions)).scalar_one()


async def run_each(batches: StoreBatches, *calls):
    async def one(name, fn, *args):
        who.set(name)  # each delivery's own log context
        return await batches.run(fn, *args)
    return await asyncio.gather(*(one(*c) for c in calls), return_exceptions=True)


async def test_deliveries_that_start_together_share_one_transaction_and_keep_their_own_results(store):
    opened = Counted(store)
    results = await run_each(batches_for(store, opened), *[(f"d{i}", park, store, f"m{i}") for i in range(5)])
    assert results == [(f"m{i}", f"d{i}") for i in range(5)]
    assert opened.opened == 1 and rows(store) == 5


async def test_a_batch_takes_at_most_its_limit(store):
    opened = Counted(store)
    await run_each(batches_for(store, opened, max_items=2), *[(f"d{i}", park, store, f"m{i}") for i in range(5)])
    assert opened.opened == 3 and rows(store) == 5


async def test_an_exception_after_a_delivery_s_writes_is_its_own_and_its_writes_stand(store):
    opened = Counted(store)
    results = await run_each(batches_for(store, opened), ("a", park, store, "m1"),
                             ("b", lambda: park(store, "m2", raise_after=Reject("refused, kept in the history"))),
                             ("c", park, store, "m3"))
    assert results[0] == ("m1", "a") and results[2] == ("m3", "c")
    assert isinstance(results[1], Reject)
    assert opened.opened == 1 and rows(store) == 3


async def test_a_failed_write_rolls_the_batch_back_and_each_delivery_runs_alone(store):
    opened, ran = Counted(store), []

    def counted(message_id, **kw):
        ran.append(message_id)
        return park(store, message_id, **kw)

    results = await run_each(batches_for(store, opened), ("a", counted, "m1"),
                             ("b", lambda: counted("m2", fail_inside=True)), ("c", counted, "m3"))
    assert results[0] == ("m1", "a") and results[2] == ("m3", "c")  # their own context, alone too
    assert isinstance(results[1], ValueError)
    # The batch got as far as m2 and was rolled back; then each alone, in a transaction of its own.
    assert opened.opened == 1 and ran == ["m1", "m2", "m1", "m2", "m3"]
    assert rows(store) == 2  # m1 and m3; m2's own transaction rolled back as the batch's did


async def test_a_store_that_is_down_makes_each_delivery_wait_uncounted(store):
    def down():
        raise StoreUnavailable("OperationalError: disk I/O error")

    results = await run_each(batches_for(store, Counted(store)), ("a", down), ("b", park, store, "m1"))
    assert isinstance(results[0], RetryLater) and results[0].counted is False
    assert results[1] == ("m1", "b") and rows(store) == 1


async def test_alone_a_write_outside_any_batch_is_its_own_transaction(store):
    assert park(store, "m1") == ("m1", None) and rows(store) == 1
