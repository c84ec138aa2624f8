"""Async client of Dify's service API (Dify 1.14.x), one `DifyClient` per app.

    async with DifyClient(app_config) as dify:
        answer = await dify.run({"topic": "x"}, user="u1")
        async with dify.stream_run({"topic": "x"}, user="u1") as stream:
            async for event in stream:
                ...

The behaviour it relies on is /work/shared/DIFY.md; errors are the DifyError family below.
"""
from .client import DifyClient, check_run_id, normalize_base_url
from .errors import (
                     DifyAuthError,
                     DifyBadRequest,
                     DifyError,
                     DifyForbidden,
                     DifyFormError,
                     DifyNotFound,
                     DifyRateLimited,
                     DifyServerError,
                     DifyStreamStalled,
                     DifyUnavailable,
                     error_from_response,
)
from .models import (
                     TERMINAL_STATUSES,
                     BlockingRunResponse,
                     FormInput,
                     HumanInputForm,
                     LogEntry,
                     LogPage,
                     Parameters,
                     PauseReason,
                     RunRecord,
                     StreamEvent,
                     is_terminal,
)
from .ratelimit import AppLimiter, TokenBucket
from .sse import SseSplitter, parse_sse_lines, parse_sse_text
from .stream import DifyStream

__all__ = [
    "DifyClient", "DifyStream", "check_run_id", "normalize_base_url",
    "DifyError", "DifyAuthError", "DifyNotFound", "DifyBadRequest", "DifyForbidden", "DifyRateLimited",
    "DifyServerError", "DifyUnavailable", "DifyFormError", "DifyStreamStalled", "error_from_response",
    "TERMINAL_STATUSES", "is_terminal", "RunRecord", "BlockingRunResponse", "PauseReason", "LogPage", "LogEntry",
    "StreamEvent", "Parameters", "HumanInputForm", "FormInput",
    "AppLimiter", "TokenBucket", "SseSplitter", "parse_sse_lines", "parse_sse_text",
]
