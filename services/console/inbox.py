"""The inbox: checkpoints by status (open / decided / expired / cancelled / all), filtered and searched
in the query itself, paged with honest totals (shared/store/checkpoints.py::inbox_where)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from services.console.auth import Session
from services.console.gates import assigned_to, gate
from services.console.policy_view import quorum_line
from services.console.web import BadRequest
from shared.access import Scope
from shared.settings import Settings
from shared.store import checkpoints as cp_store

STATUSES = {"open": ("open",), "decided": ("resolved",), "expired": ("expired",), "cancelled": ("cancelled",),
            "all": None}
STATUS_LABELS = {"open": "open", "decided": "decided", "expired": "expired", "cancelled": "cancelled", "all": "all"}
AGES = {"": None, "new": (0, 300), "5m": (300, None), "1h": (3600, None), "1d": (86400, None)}
AGE_LABELS = {"": "any age", "new": "under 5 min", "5m": "over 5 min", "1h": "over 1 hour", "1d": "over 1 day"}
MAX_PAGE = 1_000_000
MAX_SEARCH = 200


@dataclass(frozen=True)
class InboxFilters:
    status: str = "open"
    app: str = ""
    workflow: str = ""
    node: str = ""
    mine: bool = False
    age: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def of(cls, q: QueryParams) -> InboxFilters:
        """The filters of a query string; a page number that is not one is a 400, not a 500."""
        raw_page = q.get("page", "1") or "1"
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= MAX_PAGE:
            raise BadRequest(400, "invalid_field", f"page: a whole number from 1 to {MAX_PAGE}")
        status = q.get("status", "open")
        return cls(status=status if status in STATUSES else "open", app=q.get("app", "")[:64],
                   workflow=q.get("workflow", "")[:64], node=q.get("node", "")[:128], mine=q.get("mine") == "1",
                   age=q.get("age", "") if q.get("age", "") in AGES else "", q=q.get("q", "").strip()[:MAX_SEARCH],
                   page=int(raw_page))

    @property
    def narrowed(self) -> bool:
        return bool(self.app or self.workflow or self.node or self.mine or self.age or self.q)

    def query(self, **change: Any) -> str:
        """This view's query string with `change` applied (for the pager and the status tabs)."""
        values = {"status": self.status, "app": self.app, "workflow": self.workflow, "node": self.node,
                  "mine": "1" if self.mine else "", "age": self.age, "q": self.q, "page": self.page, **change}
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k == "page" and v == 1)})


def inbox(conn, settings: Settings, session: Session, scope: Scope, f: InboxFilters, page_size: int) -> dict[str, Any]:
    from services.console.views import safe  # views imports this module's names for its own pages

    statuses = STATUSES[f.status]
    now = time.time()
    low, high = AGES.get(f.age) or (None, None)
    reviewer = session.reviewer
    where = cp_store.inbox_where(
        apps=scope, statuses=statuses, app=f.app or None, workflow_id=f.workflow or None, node_id=f.node or None,
        assignees=[reviewer.name, *(f"group:{g}" for g in reviewer.groups)] if f.mine else None,
        created_before=now - low if low is not None else None,
        created_after=now - high if high is not None else None, search=f.q or None)
    started = time.perf_counter()
    rows, total = cp_store.inbox_page(conn, where, newest_decided_first=f.status != "open", limit=page_size,
                                      offset=(f.page - 1) * page_size)
    query_ms = (time.perf_counter() - started) * 1000
    shown = []
    for row in rows:
        cp = safe(dict(row))
        cp["mine"] = assigned_to(settings, session, cp)
        cp["gate"] = gate(settings, session, cp).as_dict()
        cp["quorum"] = quorum_line(cp)
        shown.append(cp)
    return {"rows": shown, "total": total, "page": f.page, "pages": max(1, -(-total // page_size)),
            "total_open": cp_store.count_open(conn, scope), "options": cp_store.inbox_options(conn, scope, statuses),
            "query_ms": query_ms}
