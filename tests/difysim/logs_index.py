"""The runs of one app as /v1/workflows/logs reads them, kept sorted so that a page costs O(log N + page).

Each list holds runs sorted by (created_at, seq) — seq is the order of creation, so ties keep it and
every key is unique. There is one list of every listed run, one per status the logs can filter on
(succeeded, failed, stopped) and one per end user's session id; a run enters a status list when
its record status changes (Run.status).
A query takes the narrowest list its filters allow, bisects the created_at bounds, and reads the
page from the end (newest first) without copying the list; only filters no list answers (keyword,
account, session together with status) scan the bounded range.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runs import Run


# The only statuses the logs can filter on (DIFY.md): runs in others need no status list.
FILTERABLE_STATUSES = ("succeeded", "failed", "stopped")


def sort_key(run: Run) -> tuple[int, int]:
    return (run.created_at, run.seq)


class SortedRuns:
    """Runs sorted by sort_key, oldest first."""

    def __init__(self) -> None:
        self.items: list[Run] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, run: Run) -> None:
        if not self.items or sort_key(self.items[-1]) <= sort_key(run):
            self.items.append(run)  # the usual case: a run created now is the newest
        else:
            insort(self.items, run, key=sort_key)

    def add_many(self, runs: list[Run]) -> None:
        self.items.extend(runs)
        self.items.sort(key=sort_key)  # two sorted runs merged: linear for Timsort

    def remove(self, run: Run) -> None:
        i = bisect_left(self.items, sort_key(run), key=sort_key)
        if i < len(self.items) and self.items[i] is run:
            del self.items[i]

    def bounds(self, after: float | None, before: float | None) -> tuple[int, int]:
        """[lo, hi) of the runs with after <= created_at <= before."""
        lo = 0 if after is None else bisect_left(self.items, (after, -1), key=sort_key)
        hi = len(self.items) if before is None else bisect_right(self.items, (before, float("inf")), key=sort_key)
        return lo, max(lo, hi)


@dataclass(frozen=True)
class LogQuery:
    status: str | None = None
    session_id: str | None = None
    after: float | None = None
    before: float | None = None
    matches: Callable[[Run], bool] | None = None  # filters no list answers (keyword, account)


class AppRunIndex:
    def __init__(self) -> None:
        self.all = SortedRuns()
        self.by_status: dict[str, SortedRuns] = {}
        self.by_session: dict[str, SortedRuns] = {}

    def _lists_of(self, run: Run) -> Iterable[SortedRuns]:
        yield self.all
        if run.status in FILTERABLE_STATUSES:
            yield self.by_status.setdefault(run.status, SortedRuns())
        if run.session_id is not None:
            yield self.by_session.setdefault(run.session_id, SortedRuns())

    def add(self, run: Run) -> None:
        for runs in self._lists_of(run):
            runs.add(run)

    def add_many(self, runs: list[Run]) -> None:
        groups: dict[int, tuple[SortedRuns, list[Run]]] = {}
        for run in runs:
            for target in self._lists_of(run):
                groups.setdefault(id(target), (target, []))[1].append(run)
        for target, batch in groups.values():
            target.add_many(batch)

    def status_changed(self, run: Run, old: str, new: str) -> None:
        if old in FILTERABLE_STATUSES:
            self.by_status[old].remove(run)
        if new in FILTERABLE_STATUSES:
            self.by_status.setdefault(new, SortedRuns()).add(run)

    def page(self, query: LogQuery, page: int, limit: int) -> tuple[int, list[Run]]:
        """(total, the runs of `page`), newest first."""
        if query.status is not None:
            base = self.by_status.get(query.status) or SortedRuns()
        elif query.session_id is not None:
            base = self.by_session.get(query.session_id) or SortedRuns()
        else:
            base = self.all
        lo, hi = base.bounds(query.after, query.before)
        start = (page - 1) * limit
        items = base.items
        session_left = query.session_id if query.status is not None else None
        if query.matches is None and session_left is None:
            total = hi - lo
            return total, [items[hi - 1 - k] for k in range(start, min(start + limit, total))]
        total, chosen = 0, []
        for i in range(hi - 1, lo - 1, -1):
            run = items[i]
            if session_left is not None and run.session_id != session_left:
                continue
            if query.matches is not None and not query.matches(run):
                continue
            if start <= total < start + limit:
                chosen.append(run)
            total += 1
        return total, chosen
