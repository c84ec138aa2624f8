"""Dify's error answers as our own exceptions.

Dify answers errors as JSON `{code, message, status}`, except for a few odd shapes (DIFY.md,
fixture 12): an unknown path is a werkzeug HTML 404 page, a non-UUID run id is a 500 `unknown`,
and a proxy in front of Dify may answer HTML or garbage. Nothing here may crash on a body.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any


class DifyError(Exception):
    """Any failed Dify call. `status` is the HTTP status (None when there was no answer)."""

    def __init__(self, status: int | None, code: str, message: str, *, endpoint: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{status if status is not None else '-'} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.endpoint, self.body = endpoint, body


class DifyAuthError(DifyError):
    """401: a bad, missing or non-Bearer app key."""


class DifyNotFound(DifyError):
    """404: an unknown run, form or task of this app — or (code `unknown_path`) a path Dify lacks."""


class DifyBadRequest(DifyError):
    """400 (`invalid_param`, `not_workflow_app`, `invalid_form_data`, …) or a request we refused
    locally before sending it (`invalid_run_id`, `invalid_inputs`)."""


class DifyForbidden(DifyError):
    """403: the app is deleted or disabled."""


class DifyRateLimited(DifyError):
    """429: `too_many_requests` (app concurrency limit) or `rate_limit_error` (quota)."""

    def __init__(self, *args: Any, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s


class DifyServerError(DifyError):
    """5xx answered by Dify itself (JSON), e.g. the 500 `unknown` for a non-UUID run id."""


class DifyUnavailable(DifyError):
    """No usable answer: connection refused/reset, timeout, or an HTML/garbage answer of a proxy."""


class DifyFormError(DifyError):
    """412 on a Human Input form: `human_input_form_submitted` or `human_input_form_expired`."""


class DifyStreamStalled(DifyError):
    """A stream that sent nothing but pings for too long (a streaming run with bad inputs hangs)."""


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(status: int, headers: Mapping[str, str], body: bytes,
                        endpoint: str | None = None) -> DifyError:
    """The exception for a non-2xx answer. `body` may be JSON, HTML or anything at all."""
    parsed = _json_or_none(body)
    is_json_error = isinstance(parsed, dict) and isinstance(parsed.get("code"), str)
    if is_json_error:
        code, message = parsed["code"], str(parsed.get("message") or "")
    else:
        code, message = "unexpected_response", _snippet(body)
    kwargs = {"endpoint": endpoint, "body": parsed if parsed is not None else _snippet(body)}
    if status == 401:
        return DifyAuthError(status, code, message, **kwargs)
    if status == 403:
        return DifyForbidden(status, code, message, **kwargs)
    if status == 404:
        if not is_json_error:
            # werkzeug's HTML page: the path itself is wrong (a bad base URL or an older Dify).
            return DifyNotFound(status, "unknown_path", "Dify has no such path (HTML 404 page)", **kwargs)
        return DifyNotFound(status, code, message, **kwargs)
    if status == 400:
        return DifyBadRequest(status, code, message, **kwargs)
    if status == 412:
        return DifyFormError(status, code, message, **kwargs)
    if status == 429:
        return DifyRateLimited(status, code if is_json_error else "too_many_requests", message,
                               retry_after_s=parse_retry_after(headers.get("retry-after")), **kwargs)
    if status >= 500:
        if is_json_error:
            return DifyServerError(status, code, message, **kwargs)
        # A JSON-less 5xx comes from whatever stands in front of Dify (nginx 502, a load balancer).
        return DifyUnavailable(status, "bad_gateway" if status in (502, 504) else "server_unavailable",
                               message, **kwargs)
    return DifyError(status, code, message, **kwargs)


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text[:limit] + ("…" if len(text) > limit else "")
