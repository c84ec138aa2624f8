"""What every state-changing POST of the console shares: the same-origin and CSRF check, and one way
to answer — JSON for the page's script, a redirect back to the checkpoint (with the outcome's code)
for a plain form post."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.console.auth import csrf_ok, wants_json
from services.console.web import BadRequest, json_error
from shared.views import valid_id


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.headers.get("host", "")


def text_of(form: dict[str, Any], key: str) -> str:
    value = form.get(key)
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else "" if value is None else str(value)


def check_csrf(request: Request, form: dict[str, Any]) -> None:
    """The session's CSRF token in the X-CSRF-Token header or the form's `csrf` field, from this site."""
    supplied = request.headers.get("x-csrf-token") or text_of(form, "csrf")
    if not same_origin(request) or not csrf_ok(request.state.session, supplied):
        raise BadRequest(403, "csrf_failed", "Missing or wrong CSRF token: reload the page and try again.")


def answer(request: Request, checkpoint_id: str, status: int, body: dict[str, Any]) -> Response:
    if wants_json(request):
        return JSONResponse(body, status_code=status)
    code = body.get("status") or body["error"]["code"]
    if status in (403, 404) or not valid_id(checkpoint_id):
        return json_error(status, code, body.get("error", {}).get("message", ""))
    return RedirectResponse(f"/checkpoints/{checkpoint_id}?outcome={code}", status_code=303)
