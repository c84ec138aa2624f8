"""Sign-in and sign-out: the password (or reviewer token) form, the OIDC buttons (oidc.py), and the
session's own answer (/api/session)."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.console.auth import LOGIN_COOKIE, LoginThrottle, Sessions, client_address, csrf_ok, safe_next
from services.console.web import BadRequest, json_error, read_form, render_page
from shared.logs import get_logger

log = get_logger(__name__)
FORM_LIMIT = 16 * 1024


def login_page(request: Request, *, error: str = "", name: str = "", status: int = 200,
               next_: str | None = None, notice: str = "") -> Response:
    sessions: Sessions = request.app.state.sessions
    cookie, nonce = sessions.login_nonce()
    response = render_page(request, "login.html", status=status, error=error, name=name, nonce=nonce, notice=notice,
                           next=safe_next(next_ or request.query_params.get("next")))
    sessions.set_cookie(response, LOGIN_COOKIE, cookie, 3600)
    return response


async def login_form(request: Request) -> Response:
    if request.state.session is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    notice = "You are signed out." if request.query_params.get("signed_out") else ""
    return login_page(request, notice=notice)


async def login(request: Request) -> Response:
    sessions: Sessions = request.app.state.sessions
    try:
        form = await read_form(request, FORM_LIMIT)
    except BadRequest as exc:
        return login_page(request, error=exc.message, status=exc.status)
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next") or "/"))
    if not sessions.login_nonce_ok(request, form.get("csrf")):
        return login_page(request, error="The sign-in form expired; please try again.", name=name, status=403,
                          next_=target)
    address = client_address(request, request.app.state.console.trusted_proxy_hops)
    key = LoginThrottle.key(address, name)
    wait_s = sessions.throttle.blocked(key)
    if wait_s:  # checked before the password: a right one during the pause is refused as well
        log.warning("console.login_throttled", reviewer=name[:64], address=address)
        return login_page(request, error=f"Too many failed attempts; wait {int(wait_s) + 1} s and try again.",
                          name=name, status=429, next_=target)
    reviewer = await asyncio.to_thread(sessions.check_password, name, password)
    if reviewer is None:
        sessions.throttle.failed(key)
        log.info("console.login_refused", reviewer=name[:64], address=address)
        return login_page(request, error="Wrong name or password.", name=name, status=401, next_=target)
    token = await asyncio.to_thread(sessions.issue, reviewer, method="password", address=address)
    log.info("console.login", reviewer=reviewer.name, method="password")
    response = RedirectResponse(target, status_code=303)
    sessions.start(response, token)
    return response


async def logout(request: Request) -> Response:
    """Revokes the session in the store (every replica refuses its cookie from now on); a provider
    session ends too when the provider offers RP-initiated logout."""
    try:
        form = await read_form(request, FORM_LIMIT)
    except BadRequest as exc:
        return json_error(exc.status, exc.code, exc.message)
    session = request.state.session
    if not csrf_ok(session, form.get("csrf") or request.headers.get("x-csrf-token")):
        return json_error(403, "csrf_failed", "missing or wrong CSRF token; reload the page")
    sessions: Sessions = request.app.state.sessions
    await asyncio.to_thread(sessions.revoke, session.token, "sign_out")
    log.info("console.logout", reviewer=session.name, method=session.method)
    target = "/login?signed_out=1"
    oidc = getattr(request.app.state, "oidc", None)
    if session.method == "oidc" and oidc is not None:
        configured = request.app.state.console.oidc_redirect_url  # behind a proxy: the public address
        base = configured.rsplit("/login/oidc/callback", 1)[0] + "/login" if configured \
            else str(request.url_for("login_form"))
        after = base + "?signed_out=1"
        target = await oidc.logout_url(session.id_token, after) or target
    response = RedirectResponse(target, status_code=303)
    sessions.end(response)
    return response


async def session_info(request: Request) -> Response:
    session = request.state.session
    return JSONResponse({"name": session.name, "groups": session.reviewer.groups, "expires": session.expires,
                         "method": session.method, "configured": session.configured})
