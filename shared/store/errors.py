"""The store's one error that callers handle: it is not there right now."""
from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class StoreUnavailable(Exception):
    """The store cannot be reached or cannot write (down, disk full, locked, timed out): the work is
    retried until it is back, never dead-lettered for this cause."""


def is_unavailable(exc: BaseException) -> bool:
    """Errors that say "the store is not there right now", as opposed to a statement the store refuses."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
