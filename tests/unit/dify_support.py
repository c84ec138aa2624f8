"""Shared by the Dify client tests: the recorded fixtures and a client wired to a handler."""
from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import httpx

from shared.dify import (
    DifyClient,
)
from shared.settings import AppConfig

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
FIXTURES = SHARED / "dify-fixtures"
RUN_ID_01 = "b39f029a-8a16-4ffa-b350-573e3971a8cc"
SKIPPED_HEADERS = {"content-length", "transfer-encoding"}



def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def recorded_response(name: str) -> httpx.Response:
    """The recorded answer of a fixture file (either {status, headers, body} or {request, response})."""
    doc = load(name)
    answer = doc.get("response", doc)
    headers = [(k, v) for k, v in answer.get("headers") or [] if k.lower() not in SKIPPED_HEADERS]
    body = answer["body"]
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return httpx.Response(answer["status"], headers=headers, content=content)


def sse_bytes(name: str) -> bytes:
    """A recorded stream back as bytes: the `[t]` prefixes and comments removed, blank separators restored."""
    lines = [re.sub(r"^\[[0-9.]+\] ", "", line) for line in (FIXTURES / name).read_text().splitlines()]
    return "".join(f"{line}\n\n" for line in lines if line and not line.startswith("#")).encode()


def make_client(handler, name: str = "t", base_url: str = "http://dify.test", key: str = "app-test-key",
                **options) -> DifyClient:
    app = AppConfig(name=name, checkpoint_token="cp-token-0001", dify_base_url=base_url, dify_api_key=key)
    options.setdefault("backoff_base_s", 0.001)
    return DifyClient(app, transport=httpx.MockTransport(handler), **options)


def replay(name: str, seen: list | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return recorded_response(name)
    return handler


def run(coroutine):
    return asyncio.run(coroutine)
