"""Sign-in, the inbox, the runs pages and the event stream (the checkpoint page is in review.py)."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.console import views
from services.console.auth import LOGIN_COOKIE, csrf_ok, safe_next, wants_json
from services.console.web import BadRequest, json_error, read_form, render_page
from shared.access import Scope, reviewer_apps
from shared.logs import get_logger

log = get_logger(__name__)
FORM_LIMIT = 16 * 1024


async def read(request: Request, fn):
    """Run `fn(conn)` on a read connection, off the event loop."""
    def run():
        with request.app.state.db.read() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


# ---------------------------------------------------------------------- sign-in
def _login_page(request: Request, *, error: str = "", name: str = "", status: int = 200,
                next_: str | None = None) -> Response:
    sessions = request.app.state.sessions
    cookie, nonce = sessions.login_nonce()
    response = render_page(request, "login.html", status=status, error=error, name=name, nonce=nonce,
                           next=safe_next(next_ or request.query_params.get("next")))
    sessions.set_cookie(response, LOGIN_COOKIE, cookie, 3600)
    return response


async def login_form(request: Request) -> Response:
    if request.state.session is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


async def login(request: Request) -> Response:
    sessions = request.app.state.sessions
    try:
        form = await read_form(request, FORM_LIMIT)
    except BadRequest as exc:
        return _login_page(request, error=exc.message, status=exc.status)
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next") or "/"))
    if not sessions.login_nonce_ok(request, form.get("csrf")):
        return _login_page(request, error="The sign-in form expired; please try again.", name=name, status=403,
                           next_=target)
    if sessions.throttled(name):
        log.warning("console.login_throttled", reviewer=name[:64])
        return _login_page(request, error="Too many failed attempts; wait a minute and try again.", name=name,
                           status=429, next_=target)
    reviewer = await asyncio.to_thread(sessions.check_password, name, password)
    if reviewer is None:
        sessions.failed(name)
        log.info("console.login_refused", reviewer=name[:64])
        return _login_page(request, error="Wrong name or password.", name=name, status=401, next_=target)
    log.info("console.login", reviewer=reviewer.name)
    response = RedirectResponse(target, status_code=303)
    sessions.start(response, reviewer)
    return response


async def logout(request: Request) -> Response:
    try:
        form = await read_form(request, FORM_LIMIT)
    except BadRequest as exc:
        return json_error(exc.status, exc.code, exc.message)
    if not csrf_ok(request.state.session, form.get("csrf") or request.headers.get("x-csrf-token")):
        return json_error(403, "csrf_failed", "missing or wrong CSRF token; reload the page")
    response = RedirectResponse("/login", status_code=303)
    request.app.state.sessions.end(response)
    return response


async def session_info(request: Request) -> Response:
    session = request.state.session
    return JSONResponse({"name": session.name, "groups": session.reviewer.groups, "expires": session.expires})


def scope_of(request: Request) -> Scope:
    """The apps the signed-in reviewer may see and decide."""
    return reviewer_apps(request.app.state.settings, request.state.session.reviewer)


# ---------------------------------------------------------------------- inbox
async def inbox(request: Request) -> Response:
    q = request.query_params
    filters = {"app": q.get("app", ""), "workflow": q.get("workflow", ""), "node": q.get("node", ""),
               "mine": q.get("mine") == "1", "age": q.get("age", "") if q.get("age", "") in views.AGES else ""}
    reviewer, scope = request.state.session.reviewer, scope_of(request)
    settings = request.app.state.settings
    data = await read(request, lambda conn: views.inbox(conn, settings, reviewer, scope, **filters))
    return render_page(request, "inbox.html", scope="inbox", open_count=data["total_open"], filters=filters,
                       age_labels=views.AGE_LABELS, **data)


# ---------------------------------------------------------------------- runs
async def runs(request: Request) -> Response:
    q = request.query_params
    status = q.get("status", "") if q.get("status", "") in views.RUN_STATUSES else ""
    page = int(q["page"]) if q.get("page", "").isdigit() else 1

    scope = scope_of(request)

    def query(conn) -> dict[str, Any]:
        return {**views.runs(conn, scope, status=status, app=q.get("app", ""), page=page),
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
    return request.app.state.hub.response(request, scope_of(request))


async def not_found(request: Request, _exc, message: str = "There is nothing at this address.") -> Response:
    if wants_json(request) or getattr(request.state, "session", None) is None:
        return json_error(404, "not_found", message)
    scope = scope_of(request)
    count = await read(request, lambda conn: views.open_count(conn, scope))
    return render_page(request, "not_found.html", status=404, scope="", open_count=count, message=message)
