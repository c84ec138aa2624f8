"""Several handlers' writes in one transaction (group commit), for a service that opts in.

`SharedWrites(db)` is a Database whose `write()` joins the batch transaction open on the calling
thread, if any (`batch()`), and behaves as `db.write()` otherwise. A batch commits once for all
of its handlers: on SQLite the commit (the WAL write of every page changed) is the largest part of
a small transaction, on PostgreSQL it is a round trip and a WAL flush.

A handler's `with db.write()` block that raises inside a batch cannot be undone alone (no
savepoints: they would cost the round trips batching saves), so it marks the batch broken; the
caller (shared/broker/batches.py) then rolls the whole batch back and runs each handler again in a
transaction of its own, exactly as without batching.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection

from shared.store.db import Database


@dataclass
class Batch:
    conn: Connection
    broken: bool = False  # a write block raised: this transaction must not commit


class SharedWrites(Database):
    """`db`, with writes that join the batch open on this thread. Everything else is `db`'s own."""

    def __init__(self, db: Database) -> None:  # no Database.__init__: the engines are db's
        self._db = db
        self._local = threading.local()

    def __getattr__(self, name: str):  # attributes (url, is_sqlite, engine, health, ...) are db's
        return getattr(self._db, name)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        batch: Batch | None = getattr(self._local, "batch", None)
        if batch is None:
            with self._db.write() as conn:
                yield conn
            return
        try:
            yield batch.conn
        except BaseException:
            batch.broken = True
            raise

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction for every write() on this thread until the block ends; committed at its end
        unless the block raises (the caller raises when the batch is broken)."""
        with self._db.write() as conn:
            batch = Batch(conn)
            self._local.batch = batch
            try:
                yield batch
            finally:
                self._local.batch = None

    def read(self):
        return self._db.read()

    def now(self) -> float:
        return self._db.now()

    @property
    def clock_offset_s(self) -> float:
        return self._db.clock_offset_s

    def ping(self) -> bool:
        return self._db.ping()

    def ready(self) -> bool:
        return self._db.ready()

    def dispose(self) -> None:
        self._db.dispose()
