"""Shared by the page handlers: templates and their filters, reading small request bodies, errors."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

HERE = Path(__file__).resolve().parent


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = time.time() - ts
    if seconds < 1:
        return "just now"
    return (f"{int(seconds)}s" if seconds < 10 else duration(seconds)) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def hm(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M UTC") if ts else "-"


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts else ""


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ago=ago, duration=duration, when=when, iso=iso, hm=hm, short=lambda s, n=8: (s or "")[:n],
                       left=lambda s: duration(s) if s > 0 else "due")
    return env


def render_page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    session = getattr(request.state, "session", None)
    html = request.app.state.templates.get_template(template).render(
        request=request, session=session, csrf=session.csrf if session else "", now=time.time(),
        console=request.app.state.console, **context)
    # A lone surrogate anywhere in what is shown (a JSON output can carry one) cannot be encoded: replace
    # it rather than fail the page; NUL, which HTML does not allow, is shown as U+FFFD as browsers would.
    return HTMLResponse(html.replace("\x00", "\ufffd").encode("utf-8", errors="replace"), status_code=status)


def json_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


async def read_form(request: Request, limit: int, lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object or an urlencoded form (no multipart), at most `limit` bytes; a form's fields named
    in `lists` keep every value (checkboxes of one name), the others their last one."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw or "{}")
        except (ValueError, RecursionError):
            raise BadRequest(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "invalid_json", "the body must be a JSON object")
        return data
    if kind in ("application/x-www-form-urlencoded", ""):
        pairs = parse_qsl(raw, keep_blank_values=True)
        fields: dict[str, Any] = dict(pairs)
        for key in lists:
            fields[key] = [v for k, v in pairs if k == key]
        return fields
    raise BadRequest(415, "unsupported_media_type", "send JSON or a urlencoded form")
