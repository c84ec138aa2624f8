"""GET /v1/workflows/logs: filters, paging and row shape as Dify 1.14.1 (fixture 10); the index is logs_index.py."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import invalid_param, pydantic_message
from .logs_index import LogQuery
from .runs import Run
from .service_api import TERMINAL_STATUSES, authenticate, sim


class WorkflowLogQuery(BaseModel):
    """Named like Dify's model so that validation messages read the same."""
    keyword: str | None = None
    status: Literal["succeeded", "failed", "stopped"] | None = None
    created_at__before: str | None = None
    created_at__after: str | None = None
    created_by_end_user_session_id: str | None = None
    created_by_account: str | None = None
    page: int = Field(default=1, ge=1, le=99999)
    limit: int = Field(default=20, ge=1, le=100)


def parse_iso_time(value: str) -> datetime:
    """ISO 8601 like dateutil's isoparse, with its error messages for the usual mistakes (fixture 12)."""
    head = value[:4]
    if len(value) < 4:
        raise ValueError("ISO string too short")
    if not head.isdigit():
        raise ValueError(f"invalid literal for int() with base 10: {head.encode()!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        if value.isdigit():
            raise ValueError("ISO time too short") from None  # e.g. a unix timestamp
        raise ValueError(f"Invalid isoformat string: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def created_by_fields(run: Run) -> dict:
    if run.account is not None:
        return {"created_from": run.created_from, "created_by_role": "account",
                "created_by_account": run.account.as_json(), "created_by_end_user": None}
    return {"created_from": run.created_from, "created_by_role": "end_user", "created_by_account": None,
            "created_by_end_user": {"id": run.end_user.id, "type": "service-api", "is_anonymous": False,
                                    "session_id": run.end_user.session_id}}


def log_row(run: Run) -> dict:
    running = run.status not in TERMINAL_STATUSES
    return {
        "id": run.log_id,
        "workflow_run": {
            "id": run.id, "version": run.workflow.version, "status": run.status, "triggered_from": run.triggered_from,
            "error": run.error, "elapsed_time": 0.0 if running else run.elapsed_time, "total_tokens": 0,
            "total_steps": run.total_steps, "created_at": run.created_at,
            "finished_at": None if running else run.finished_at,
            "exceptions_count": 0 if running else run.exceptions_count},
        "details": None, **created_by_fields(run), "created_at": run.created_at}


def _matches_keyword(run: Run, keyword: str) -> bool:
    haystack = " ".join([run.id, run.session_id or "", json.dumps(run.user_inputs, ensure_ascii=False),
                         json.dumps(run.outputs, ensure_ascii=False)]).lower()
    return keyword.lower() in haystack


def log_query(query: WorkflowLogQuery) -> LogQuery:
    """The index query for Dify's filters; keyword and account are checked run by run."""
    after = parse_iso_time(query.created_at__after).timestamp() if query.created_at__after else None
    before = parse_iso_time(query.created_at__before).timestamp() if query.created_at__before else None
    checks = []
    if query.created_by_account:
        checks.append(lambda run: run.account is not None and run.account.email == query.created_by_account)
    if query.keyword:
        checks.append(lambda run: _matches_keyword(run, query.keyword))
    matches = (lambda run: all(check(run) for check in checks)) if checks else None
    return LogQuery(status=query.status, session_id=query.created_by_end_user_session_id or None, after=after,
                    before=before, matches=matches)


async def workflow_logs(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    try:
        query = WorkflowLogQuery.model_validate(dict(request.query_params))
        index_query = log_query(query)
    except ValidationError as exc:
        raise invalid_param(pydantic_message(exc)) from None
    except ValueError as exc:
        raise invalid_param(str(exc)) from None
    total, page = state.store.logs_of(app).page(index_query, query.page, query.limit)
    return JSONResponse({"page": query.page, "limit": query.limit, "total": total,
                         "has_more": query.page * query.limit < total, "data": [log_row(r) for r in page]})
