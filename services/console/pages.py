"""The inbox, the runs pages, the event stream and the answers every page shares (404, 503); sign-in
is in signin.py, the checkpoint page in review.py."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.console import inbox as inbox_view
from services.console import views
from services.console.auth import wants_json
from services.console.web import BadRequest, json_error, render_page
from shared.access import Scope, reviewer_apps
from shared.logs import get_logger
from shared.store.errors import StoreUnavailable

log = get_logger(__name__)


async def read(request: Request, fn):
    """Run `fn(conn)` on a read connection, off the event loop. A store that does not answer raises
    StoreUnavailable, which the app answers 503 (store_unavailable)."""
    def run():
        with request.app.state.db.read() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


def scope_of(request: Request) -> Scope:
    """The apps the signed-in reviewer may see and decide (for an identity-provider sign-in, with the
    groups the provider sent)."""
    return reviewer_apps(request.app.state.settings, request.state.session.reviewer)


# ---------------------------------------------------------------------- inbox
async def inbox(request: Request) -> Response:
    try:
        filters = inbox_view.InboxFilters.of(request.query_params)
    except BadRequest as exc:
        return await bad_request(request, exc)
    session, scope = request.state.session, scope_of(request)
    settings, console = request.app.state.settings, request.app.state.console
    data = await read(request, lambda conn: inbox_view.inbox(conn, settings, session, scope, filters,
                                                             console.page_size))
    if data["query_ms"] > 250:
        log.info("console.inbox_slow", ms=round(data["query_ms"]), total=data["total"])
    return render_page(request, "inbox.html", scope="inbox", open_count=data["total_open"], filters=filters,
                       age_labels=inbox_view.AGE_LABELS, status_labels=inbox_view.STATUS_LABELS, **data)


# ---------------------------------------------------------------------- runs
async def runs(request: Request) -> Response:
    q = request.query_params
    status = q.get("status", "") if q.get("status", "") in views.RUN_STATUSES else ""
    raw_page = q.get("page", "1") or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= inbox_view.MAX_PAGE:
        return await bad_request(request, BadRequest(400, "invalid_field",
                                                     f"page: a whole number from 1 to {inbox_view.MAX_PAGE}"))
    scope = scope_of(request)

    def query(conn) -> dict[str, Any]:
        return {**views.runs(conn, scope, status=status, app=q.get("app", ""), page=int(raw_page)),
                "open_count": views.open_count(conn, scope)}

    data = await read(request, query)
    return render_page(request, "runs.html", scope="runs", filters={"status": status, "app": q.get("app", "")}, **data)


async def run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    scope = scope_of(request)

    def query(conn):
        found = views.run(conn, run_id, scope)
        return found and {**found, "open_count": views.open_count(conn, scope)}

    data = await read(request, query)
    if data is None:
        return await not_found(request, None, f"No run {run_id} is tracked.")
    return render_page(request, "run.html", scope=f"run:{run_id}", **data)


# ---------------------------------------------------------------------- live
async def events(request: Request) -> Response:
    return request.app.state.hub.response(request, scope_of(request), request.state.session)


# ---------------------------------------------------------------------- shared answers
async def not_found(request: Request, _exc, message: str = "There is nothing at this address.") -> Response:
    if wants_json(request) or getattr(request.state, "session", None) is None:
        return json_error(404, "not_found", message)
    scope = scope_of(request)
    try:
        count = await read(request, lambda conn: views.open_count(conn, scope))
    except StoreUnavailable:
        count = 0
    return render_page(request, "not_found.html", status=404, scope="", open_count=count, message=message)


async def bad_request(request: Request, exc: BadRequest) -> Response:
    if wants_json(request):
        return json_error(exc.status, exc.code, exc.message)
    return render_page(request, "not_found.html", status=exc.status, scope="", open_count="–", title="Bad request",
                       message=exc.message)


async def store_unavailable(request: Request, _exc: Exception) -> Response:
    """Reads while the store does not answer: 503 with Retry-After, never a 500."""
    log.warning("console.store_unavailable", path=request.url.path)
    if wants_json(request) or getattr(request.state, "session", None) is None:
        response: Response = json_error(503, "store_unavailable", "The store does not answer; try again shortly.")
    else:
        response = render_page(request, "not_found.html", status=503, scope="", open_count="–",
                               title="Store unavailable",
                               message="The store does not answer right now. Nothing is lost: reload this page "
                                       "in a moment.")
    response.headers["Retry-After"] = "5"
    return response
