"""Console authentication, simpler than Dify's session login (DIFY.md "Console API").

Accepted on every /console/api route but setup and login:
- `Authorization: Bearer <console token>` (`--console-token`, default "difysim-console"), or
- Dify's cookies as POST /console/api/login sets them: `access_token` = the console token, plus the
  header `X-CSRF-Token` equal to the `csrf_token` cookie.
Login accepts any e-mail with the console token as password (base64-encoded, as Dify's web app
sends it, or plain). There is one account, the simulator's admin; setup always reads "finished".
"""
from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError
from .service_api import json_body
from .state import SimState

SETUP_AT = datetime.now(UTC).isoformat()


def same(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def authorize(request: Request, token: str) -> None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and same(header[7:].strip(), token):
        return
    if same(request.cookies.get("access_token"), token):
        csrf = request.cookies.get("csrf_token")
        if csrf and same(request.headers.get("x-csrf-token"), csrf):
            return
        raise ApiError(401, "unauthorized", "CSRF token is missing or invalid.")
    raise ApiError(401, "unauthorized", "Invalid Authorization token.")


def console_state(request: Request) -> SimState:
    """The simulator's state, once the caller is authorized for the console."""
    state: SimState = request.app.state.sim
    authorize(request, state.config.console_token)
    return state


def decoded_password(password: str) -> str:
    try:
        return base64.b64decode(password, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return password


async def setup_status(request: Request) -> Response:
    return JSONResponse({"step": "finished", "setup_at": SETUP_AT})


async def setup(request: Request) -> Response:
    return JSONResponse({"result": "success"}, status_code=201)


async def login(request: Request) -> Response:
    state: SimState = request.app.state.sim
    body = await json_body(request)
    password = str(body.get("password") or "")
    token = state.config.console_token
    if not body.get("email") or not (same(decoded_password(password), token) or same(password, token)):
        raise ApiError(401, "authentication_failed", "Invalid email or password.")
    response = JSONResponse({"result": "success"})
    response.set_cookie("access_token", token, httponly=True, samesite="lax")
    response.set_cookie("refresh_token", secrets.token_urlsafe(24), httponly=True, samesite="lax")
    response.set_cookie("csrf_token", secrets.token_urlsafe(24), samesite="lax")
    return response
