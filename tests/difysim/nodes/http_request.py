"""HTTP Request node: renders the request, sends it with httpx, and judges the answer like Dify 1.14.1."""
from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import (
    HTTP_MAX_CONNECT_TIMEOUT_S,
    HTTP_MAX_READ_TIMEOUT_S,
    HTTP_MAX_WRITE_TIMEOUT_S,
    HTTP_NODE_MAX_TEXT_SIZE,
)
from ..templates import render, render_json_body
from .base import NodeContext, NodeResult, failure

NODE_ERROR = "HttpRequestNodeError"
STATUS_ERROR = "HTTPResponseCodeError"
# Dify's HTTP client gives up at once on these and raises "Reached maximum retries" (DIFY.md).
GIVE_UP_STATUSES = {429, 500, 502, 503, 504}


def _lines(text: str) -> list[tuple[str, str]]:
    """`Key:Value` lines (headers, params) -> pairs; lines without a colon get an empty value."""
    pairs = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _timeout(data: dict) -> httpx.Timeout:
    cfg = data.get("timeout") or {}

    def pick(name: str, server_max: float) -> float:
        value = cfg.get(name) or cfg.get(f"max_{name}_timeout")
        return float(value) if value else server_max  # 0/null -> the server maximum; above it is accepted

    return httpx.Timeout(connect=pick("connect", HTTP_MAX_CONNECT_TIMEOUT_S),
                         read=pick("read", HTTP_MAX_READ_TIMEOUT_S),
                         write=pick("write", HTTP_MAX_WRITE_TIMEOUT_S), pool=None)


def _auth_headers(auth: dict) -> dict[str, str]:
    if (auth or {}).get("type") != "api-key":
        return {}
    config = auth.get("config") or {}
    key = config.get("api_key") or ""
    kind = config.get("type", "bearer")
    if kind == "basic":
        token = key if ":" not in key else base64.b64encode(key.encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if kind == "custom":
        return {config.get("header") or "Authorization": key}
    return {"Authorization": f"Bearer {key}"}


def build_request(ctx: NodeContext) -> dict[str, Any]:
    """Everything httpx needs, plus the text Dify shows as process_data.request."""
    data, pool = ctx.data, ctx.pool
    url = render(data.get("url", ""), pool)
    params = [(render(k, pool), render(v, pool)) for k, v in _lines(data.get("params", ""))]
    headers = {render(k, pool): render(v, pool) for k, v in _lines(data.get("headers", ""))}
    headers.update(_auth_headers(data.get("authorization") or {}))
    body = data.get("body") or {"type": "none"}
    kind, items = body.get("type", "none"), body.get("data") or []
    content: bytes | None = None
    shown_body = ""
    files = None
    if kind == "json" and items:
        parsed = render_json_body(items[0].get("value", ""), pool)
        if parsed is not None:
            # httpx >= 0.28 sends json= compactly; Dify's log shows json.dumps' default layout.
            content = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()
            shown_body = json.dumps(parsed)
        headers.setdefault("Content-Type", "application/json")
    elif kind == "raw-text" and items:
        shown_body = render(items[0].get("value", ""), pool)
        content = shown_body.encode()
        headers.setdefault("Content-Type", "text/plain")
    elif kind == "x-www-form-urlencoded":
        form = {render(i.get("key", ""), pool): render(i.get("value", ""), pool) for i in items}
        content = httpx.QueryParams(form).__str__().encode()
        shown_body = content.decode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif kind == "form-data":
        files = [(render(i.get("key", ""), pool), (None, render(i.get("value", ""), pool)))
                 for i in items if i.get("type", "text") == "text"]
        shown_body = "&".join(f"{k}={v[1]}" for k, v in files)
    full_url = str(httpx.URL(url, params=params)) if params else url
    parts = urlsplit(full_url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown_headers = "".join(f"{k}: {'*' * 8 if k.lower() == 'authorization' else v}\r\n" for k, v in headers.items())
    length = f"Content-Length: {len(content)}\r\n" if content is not None else ""
    shown = (f"{data.get('method', 'get').upper()} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
             f"{shown_headers}{length}\r\n{shown_body}")
    return {"method": data.get("method", "get").upper(), "url": full_url, "headers": headers,
            "content": content, "files": files, "shown": shown}


def _transport_error(exc: httpx.RequestError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"  # what the socket says; Dify relays it as the node error
    text = str(exc)
    if isinstance(exc, httpx.ConnectError) and ("refused" in text.lower() or "connect call failed" in text.lower()
                                                or "all connection attempts failed" in text.lower()):
        return "[Errno 111] Connection refused"  # the sync socket's wording, which real Dify shows
    return text or type(exc).__name__


async def run_http_request(ctx: NodeContext) -> NodeResult:
    try:
        req = build_request(ctx)
    except (ValueError, TypeError) as exc:
        return failure(f"Failed to build the request: {exc}", NODE_ERROR, inputs={})
    process_data = {"request": req["shown"]}
    # One trace id per node execution, a new span id per attempt (fixture 03).
    headers = {**req["headers"], "traceparent": f"00-{ctx.trace_id}-{secrets.token_hex(8)}-01"}
    try:
        response = await ctx.http.request(req["method"], req["url"], headers=headers, content=req["content"],
                                          files=req["files"], timeout=_timeout(ctx.data))
    except httpx.RequestError as exc:
        return failure(_transport_error(exc), NODE_ERROR, inputs={}, process_data=process_data)
    if response.status_code in GIVE_UP_STATUSES:
        return failure(f"Reached maximum retries for URL {req['url']}", NODE_ERROR, inputs={},
                       process_data=process_data, outputs={})
    outputs = {"status_code": response.status_code, "body": response.text[:HTTP_NODE_MAX_TEXT_SIZE],
               "headers": dict(response.headers.items()), "files": []}
    if not 200 <= response.status_code < 300 and ctx.fails_on_error_status():
        return failure(f"Request failed with status code {response.status_code}", STATUS_ERROR, inputs={},
                       process_data=process_data, outputs=outputs)
    return NodeResult(inputs={}, process_data=process_data, outputs=outputs)
