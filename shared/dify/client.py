"""DifyClient: the async Dify service-API client of one app (one per app; apps may live on
different Dify servers). Behaviour follows /work/shared/DIFY.md (Dify 1.14.1) and its fixtures."""
from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from shared.settings import AppConfig

from .errors import DifyBadRequest, DifyError
from .inputs import validate_inputs
from .models import LOG_FILTER_STATUSES, BlockingRunResponse, HumanInputForm, LogEntry, LogPage, Parameters, RunRecord
from .ratelimit import AppLimiter
from .requester import Requester
from .stream import DifyStream

M = TypeVar("M", bound=BaseModel)
# Dify ends every run at WORKFLOW_MAX_EXECUTION_TIME (1200 s by default); a blocking call can last
# that long when a checkpoint is held, so it gets its own read timeout.
DEFAULT_RUN_TIMEOUT_S = 1230.0


def normalize_base_url(url: str) -> str:
    """`http://host:5001`, `http://host:5001/` and `http://host:5001/v1` all mean the same server."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def check_run_id(run_id: str) -> str:
    """The canonical form of a run id; refuses a non-UUID locally, because Dify answers it with a
    500 `unknown` instead of a 404 (fixture 12)."""
    try:
        return str(uuid.UUID(str(run_id)))
    except ValueError:
        raise DifyBadRequest(None, "invalid_run_id", f"run id {run_id!r} is not a UUID") from None


def iso_time(value: datetime | str) -> str:
    """Dify's logs filters want ISO 8601 (a Unix number answers 400); naive datetimes are UTC."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"expected a datetime or an ISO 8601 string, got {value!r}")


class DifyClient:
    def __init__(self, app: AppConfig, *, rate_per_s: float = 10, max_concurrency: int = 8, timeout_s: float = 30,
                 retries: int = 3, transport: httpx.AsyncBaseTransport | None = None, burst: float | None = None,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 8.0, run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
                 idle_limit_s: float = 60.0, parameters_ttl_s: float = 60.0, direct_share: float = 1.0) -> None:
        if not app.dify_base_url or not app.dify_api_key:
            raise ValueError(f"app {app.name!r}: dify_base_url and dify_api_key are both needed for a Dify client")
        self.app = app
        self.base_url = normalize_base_url(app.dify_base_url)
        self.timeout_s, self.run_timeout_s, self.idle_limit_s = timeout_s, run_timeout_s, idle_limit_s
        self.limiter = AppLimiter(app.name, rate_per_s, max_concurrency, burst, direct_share=direct_share)
        self.requester = Requester(app.name, self.base_url, app.dify_api_key, limiter=self.limiter,
                                   timeout_s=timeout_s, retries=retries, backoff_base_s=backoff_base_s,
                                   backoff_cap_s=backoff_cap_s, transport=transport)
        self.parameters_ttl_s = parameters_ttl_s
        self._parameters: tuple[float, Parameters] | None = None

    @property
    def waits(self) -> int:
        """How many calls had to wait for the client-side rate limit."""
        return self.limiter.waits

    async def aclose(self) -> None:
        await self.requester.aclose()

    async def __aenter__(self) -> DifyClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ runs
    async def run(self, inputs: dict[str, Any], user: str, response_mode: Literal["blocking", "streaming"] = "blocking",
                  workflow_id: str | None = None, files: list[Any] | None = None, *,
                  timeout_s: float | None = None) -> BlockingRunResponse:
        """A blocking run. HTTP 200 also for a failed run: look at `.data.status` / `.data.error`.
        Never retried (the run may have started). For streaming use `stream_run`."""
        if response_mode != "blocking":
            raise ValueError("run() is blocking only; use stream_run() for a streaming run")
        timeout = httpx.Timeout(self.timeout_s, read=timeout_s or self.run_timeout_s)
        body = await self.requester.call("POST", self._run_path(workflow_id), "workflows_run", idempotent=False,
                                         json=self._run_body(inputs, user, "blocking", files),
                                         http_timeout=timeout)
        return _parse(BlockingRunResponse, body, "workflows_run")

    def stream_run(self, inputs: dict[str, Any], user: str, workflow_id: str | None = None,
                   files: list[Any] | None = None, *, validate: bool = True, idle_limit_s: float | None = None,
                   max_ping_only_s: float | None = None) -> DifyStream:
        """A streaming run: `async with client.stream_run(...) as stream: async for event in stream`.
        Inputs are checked against /v1/parameters first (`validate`), because Dify hangs on bad
        ones; the stream ends after workflow_finished, workflow_paused or an error event."""
        body = self._run_body(inputs, user, "streaming", files)

        async def open_response() -> httpx.Response:
            if validate:
                await self.validate_inputs(inputs)
            return await self.requester.open_stream("POST", self._run_path(workflow_id), "workflows_run",
                                                    json=body, idempotent=False)

        return DifyStream(open_response, endpoint="workflows_run", gap_limit_s=self.timeout_s,
                          idle_limit_s=self.idle_limit_s if idle_limit_s is None else idle_limit_s,
                          max_ping_only_s=max_ping_only_s)

    async def get_run(self, run_id: str, *, lane: str | None = None) -> RunRecord:
        """Dify's record of a run. A stopped run may say `running` forever (DIFY.md): trust the stream.
        `lane="direct"`: a one-by-one poll, which yields to a listing sweep (AppLimiter)."""
        path = f"/v1/workflows/run/{check_run_id(run_id)}"
        body = await self.requester.call("GET", path, "get_run", idempotent=True, lane=lane)
        return _parse(RunRecord, body, "get_run")

    async def stop(self, task_id: str, user: str) -> dict[str, Any]:
        """Ask Dify to stop a task (the task_id of the run answer / stream, not the run id). Dify
        says success even for unknown tasks, and its run record may never agree (fixture 11)."""
        if not task_id:
            raise ValueError("task_id is required")
        path = f"/v1/workflows/tasks/{quote(str(task_id), safe='')}/stop"
        return await self.requester.call("POST", path, "stop", json={"user": user}, idempotent=False)

    def events(self, run_id: str, user: str, include_state_snapshot: bool = False, continue_on_pause: bool = False,
               *, idle_limit_s: float | None = None, max_ping_only_s: float | None = None) -> DifyStream:
        """Re-attach to a run's stream (`GET /v1/workflow/{id}/events`, singular). A finished run
        sends one workflow_finished; a paused one without flags sends only pings until Dify closes
        the stream at 300 s — pass `idle_limit_s` to give up sooner."""
        params = {"user": user}
        if include_state_snapshot:
            params["include_state_snapshot"] = "true"
        if continue_on_pause:
            params["continue_on_pause"] = "true"
        path = f"/v1/workflow/{check_run_id(run_id)}/events"

        async def open_response() -> httpx.Response:
            return await self.requester.open_stream("GET", path, "events", params=params, idempotent=True)

        return DifyStream(open_response, endpoint="events", gap_limit_s=self.timeout_s, idle_limit_s=idle_limit_s,
                          max_ping_only_s=max_ping_only_s, end_on_pause=not continue_on_pause)

    # ------------------------------------------------------------------ logs
    async def logs(self, page: int = 1, limit: int = 100, status: str | None = None,
                   created_at_after: datetime | str | None = None, created_at_before: datetime | str | None = None,
                   keyword: str | None = None, user: str | None = None, account: str | None = None) -> LogPage:
        """One page of the run logs, newest first (running and paused runs included)."""
        if status is not None and status not in LOG_FILTER_STATUSES:
            raise ValueError(f"Dify's logs filter accepts status {sorted(LOG_FILTER_STATUSES)} only, not {status!r}")
        if page < 1 or not 1 <= limit <= 100:
            raise ValueError("page must be >= 1 and limit between 1 and 100")
        params: dict[str, Any] = {"page": page, "limit": limit}
        optional = {"status": status, "keyword": keyword, "created_by_end_user_session_id": user,
                    "created_by_account": account,
                    "created_at__after": iso_time(created_at_after) if created_at_after is not None else None,
                    "created_at__before": iso_time(created_at_before) if created_at_before is not None else None}
        params.update({k: v for k, v in optional.items() if v is not None})
        return _parse(LogPage, await self.requester.call("GET", "/v1/workflows/logs", "logs", params=params,
                                                         idempotent=True), "logs")

    def sweeping(self) -> _Sweeping:
        """`async with client.sweeping():` around a listing walk: direct polls yield to it meanwhile."""
        return _Sweeping(self.limiter)

    async def iter_logs(self, created_at_after: datetime | str | None = None, *, limit: int = 100,
                        max_pages: int | None = None, **filters: Any) -> AsyncIterator[LogEntry]:
        """Every log entry after a watermark, page by page until `has_more` is false. Rows that
        new runs push onto the next page while we walk are yielded once only."""
        seen: set[str] = set()
        page = 1
        while max_pages is None or page <= max_pages:
            result = await self.logs(page=page, limit=limit, created_at_after=created_at_after, **filters)
            for entry in result.data:
                if entry.id not in seen:
                    seen.add(entry.id)
                    yield entry
            if not result.has_more or not result.data:
                return
            page += 1

    # ------------------------------------------------------------------ app form and human input
    async def parameters(self, refresh: bool = False) -> Parameters:
        """The app's Start form (cached `parameters_ttl_s`, 60 s by default)."""
        cached = self._parameters
        if not refresh and cached is not None and time.monotonic() - cached[0] < self.parameters_ttl_s:
            return cached[1]
        parameters = _parse(Parameters, await self.requester.call("GET", "/v1/parameters", "parameters",
                                                                  idempotent=True), "parameters")
        self._parameters = (time.monotonic(), parameters)
        return parameters

    async def validate_inputs(self, inputs: dict[str, Any]) -> None:
        """Raise DifyBadRequest(code="invalid_inputs") naming the input Dify would reject."""
        validate_inputs((await self.parameters()).input_specs(), inputs)

    async def form_get(self, form_token: str) -> HumanInputForm:
        """A Human Input form. 412 (DifyFormError) once submitted or expired; 404 for another app."""
        body = await self.requester.call("GET", self._form_path(form_token), "form_get", idempotent=True)
        return _parse(HumanInputForm, body, "form_get")

    async def form_submit(self, form_token: str, inputs: dict[str, Any], action: str, user: str) -> dict[str, Any]:
        """Decide a Human Input form: `inputs` must hold every form input, `action` an action id.
        200 `{}`; 412 already submitted/expired, 400 `invalid_form_data`. Never retried."""
        return await self.requester.call("POST", self._form_path(form_token), "form_submit", idempotent=False,
                                         json={"inputs": inputs, "action": action, "user": user})

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _run_path(workflow_id: str | None) -> str:
        return "/v1/workflows/run" if workflow_id is None else f"/v1/workflows/{quote(workflow_id, safe='')}/run"

    @staticmethod
    def _run_body(inputs: dict[str, Any], user: str, mode: str, files: list[Any] | None) -> dict[str, Any]:
        if not user:
            raise ValueError("user is required (Dify answers 400 without it)")
        body: dict[str, Any] = {"inputs": inputs, "response_mode": mode, "user": user}
        if files is not None:
            body["files"] = files
        return body

    @staticmethod
    def _form_path(form_token: str) -> str:
        if not form_token:
            raise ValueError("form_token is required")
        return f"/v1/form/human_input/{quote(form_token, safe='')}"


class _Sweeping:
    def __init__(self, limiter: AppLimiter) -> None:
        self.limiter = limiter

    async def __aenter__(self) -> None:
        self.limiter.sweeping += 1

    async def __aexit__(self, *exc_info) -> None:
        self.limiter.sweeping -= 1


def _parse(model: type[M], body: Any, endpoint: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise DifyError(200, "invalid_response", f"{endpoint}: unexpected answer shape: "
                        f"{exc.errors()[0]['msg'] if exc.errors() else exc}", endpoint=endpoint, body=body) from None
