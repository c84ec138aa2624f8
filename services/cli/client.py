"""The reviewer commands' door to ingest's HTTP API (HITL_API_URL, HITL_TOKEN): one place for the
address, the token, the error shape and what a failed call prints."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import httpx

from services.cli import render

DEFAULT_API_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    """A problem the user can fix (configuration, arguments): printed in red, exit status 2."""


class Api:
    """`call` answers (status, JSON); `get`/`post` print the error and exit 1 on a 4xx/5xx answer.

    `client` is any httpx.Client (tests pass one bound to an in-process ingest)."""

    def __init__(self, base_url: str, token: str | None, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client = client
        self.as_json = False  # set from --json: errors are printed as the API's JSON too

    @classmethod
    def from_env(cls) -> Api:
        return cls(os.environ.get("HITL_API_URL", DEFAULT_API_URL), os.environ.get("HITL_TOKEN"))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        if not self.token:
            raise CliError("set HITL_TOKEN to your reviewer token (see README, Configuration)")
        headers = {"Authorization": f"Bearer {self.token}", "X-HITL-Channel": "cli"}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            if self.client is not None:
                r = self.client.request(method, self.base_url + path, json=body, params=query, headers=headers)
            else:
                r = httpx.request(method, self.base_url + path, json=body, params=query, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.base_url}: {exc}") from None
        try:
            data = r.json()
        except ValueError:
            data = {"error": {"code": "http_error", "message": r.text[:300]}}
        return r.status_code, data

    def get(self, path: str, **params: Any) -> Any:
        status, data = self.call("GET", path, params=params)
        fail_on_error(status, data, self.as_json)
        return data

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        status, data = self.call("POST", path, body)
        fail_on_error(status, data, self.as_json)
        return data


def fail_on_error(status: int, data: Any, as_json: bool) -> None:
    if status < 400:
        return
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        print(render.error(f"{status} {err.get('code', 'error')}: {err.get('message', data)}"), file=sys.stderr)
        if err.get("winning_decision"):
            w = err["winning_decision"]
            print(f"  decided first: {w.get('action')} by {w.get('decided_by')} ({w.get('channel', '?')})",
                  file=sys.stderr)
    sys.exit(1)


def refuse(message: str) -> NoReturn:
    """A definite answer that is not a success (not found, ambiguous, invalid output): exit status 1."""
    print(render.error(message), file=sys.stderr)
    sys.exit(1)


def output(data: Any, as_json: bool, as_text: Callable[[Any], str]) -> None:
    """The API's answer as JSON (--json), else as the terminal text `as_text` makes of it."""
    print(json.dumps(data, indent=2, ensure_ascii=False) if as_json else as_text(data))
