"""The store's one error that callers handle: it is not there right now."""
from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class StoreUnavailable(Exception):
    """The store cannot be reached or cannot write (down, disk full, locked, timed out): the work is
    retried until it is back, never dead-lettered for this cause.

    `connection_lost`: a connection that worked died under the statement (a restart, a failover, a
    cut link). The pool has been invalidated, so the same work may succeed at once on a fresh
    connection — to the new primary of a multi-host URL."""

    def __init__(self, message: str, *, connection_lost: bool = False) -> None:
        super().__init__(message)
        self.connection_lost = connection_lost


def is_connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_unavailable(exc: BaseException) -> bool:
    """Errors that say "the store is not there right now", as opposed to a statement the store refuses."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
