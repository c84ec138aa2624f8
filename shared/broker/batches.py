"""Store handlers' deliveries that arrive together run together: one hop to the store executor and
one transaction for all of them (group commit), for a service whose store opts in (its
`store_batch()`, shared/store/batch.py).

Nothing waits to make a batch: the deliveries one socket read brings (a prefetch window's worth
under load) start in the same loop iteration, and a batch takes every delivery that waits when
it starts; while batches are in flight (`in_flight`) the next deliveries wait and form the next
one. Idle, a batch is one delivery and costs what it did before.

What each delivery gets is what it would get alone: its handler's result or exception, its own
log context; the router publishes its messages with confirms and then it is acked, each delivery
on its own (shared/broker/router.py, dispatch.py). A batch whose transaction cannot commit — a
write inside it failed, the commit failed, the store is down — is rolled back as a whole and each
of its deliveries runs again alone, in a transaction of its own, as without batching.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from shared import metrics
from shared.broker.errors import RetryLater
from shared.store.errors import StoreUnavailable

STORE_RETRY_S = 1.0
T = TypeVar("T")


@dataclass(slots=True)
class _Item:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    context: contextvars.Context
    future: asyncio.Future


class _Broken(Exception):
    """A write inside the batch failed: its transaction must not commit."""


class StoreBatches:
    def __init__(self, broker: Any, open_batch: Callable[[], AbstractContextManager[Any]], *, max_items: int,
                 in_flight: int) -> None:
        self.broker = broker
        self.open_batch = open_batch
        self.max_items = max(1, max_items)
        self.in_flight = max(1, in_flight)
        self._waiting: list[_Item] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the store executor, in the next batch; its result, or its exception."""
        loop = asyncio.get_running_loop()
        item = _Item(fn, args, contextvars.copy_context(), loop.create_future())
        self._waiting.append(item)
        if not self._scheduled:
            # After the deliveries started in this loop iteration have joined, not before.
            self._scheduled = True
            loop.call_soon(self._start)
        return await item.future

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._running < self.in_flight:
            items, self._waiting = self._waiting[:self.max_items], self._waiting[self.max_items:]
            self._running += 1
            task = asyncio.ensure_future(self._run(items))
            self._tasks.add(task)  # a reference, so the task is not collected mid-way
            task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.broker.executor, self._together, items)
            metrics.store_batches.inc()
            metrics.store_batched_deliveries.inc(len(items))
            if results is None:  # nothing of it happened: each alone, as without batching
                metrics.store_batches_split.inc()
                await asyncio.gather(*(self._alone(item) for item in items))
                return
            for item, (ok, value) in zip(items, results, strict=True):
                if item.future.done():
                    continue
                if ok:
                    item.future.set_result(value)
                else:
                    item.future.set_exception(value)
        except BaseException as exc:  # the loop is closing: nobody is left to tell but the waiters
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            raise
        finally:
            self._running -= 1
            if self._waiting and not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._start)

    def _together(self, items: list[_Item]) -> list[tuple[bool, Any]] | None:
        """In the executor: every item in one transaction. None when it did not commit."""
        results: list[tuple[bool, Any]] = []
        try:
            with self.open_batch() as batch:
                for item in items:
                    try:
                        results.append((True, item.context.run(item.fn, *item.args)))
                    except Exception as exc:
                        if batch.broken or isinstance(exc, StoreUnavailable):  # the store is down: alone, each
                            raise _Broken() from exc  # waits for it (RetryLater, uncounted)
                        results.append((False, exc))  # raised after its writes were done: they stand
                if batch.broken:  # a handler caught the error of a write of its own
                    raise _Broken()
        except Exception:
            return None
        return results

    async def _alone(self, item: _Item) -> None:
        try:
            result = await in_store(self.broker, item.context.run, item.fn, *item.args)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            if not item.future.done():
                item.future.set_result(result)


async def in_store(broker: Any, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the store executor, with this delivery's log context. A store that is not
    there is no fault of the message: it waits (uncounted) and comes back until the store does.

    A connection that died under the transaction (PostgreSQL restarted, a standby promoted) is tried
    once more at once: its rollback left nothing behind, the pool is fresh, and running the handler
    again is what a redelivery would do anyway. Only if that fails too does the message wait."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    try:
        try:
            return await loop.run_in_executor(broker.executor, lambda: context.run(fn, *args))
        except StoreUnavailable as exc:
            if not exc.connection_lost:
                raise
            metrics.store_retries.inc()
            return await loop.run_in_executor(broker.executor, lambda: context.run(fn, *args))
    except StoreUnavailable as exc:
        raise RetryLater(f"store unavailable: {exc}", delay_s=STORE_RETRY_S, counted=False) from exc
