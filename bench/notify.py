"""(5) Notification latency: how long after `checkpoint.opened` the card reaches its platform.

The real stack plus the notifier, its webhook channel pointed at a receiver in this process (an
asyncio HTTP server that checks `X-HITL-Signature` like a customer's bot would). Checkpoints are
opened at a fixed rate (detached, so no call is held); an observer on `hitl.events` stamps each
`checkpoint.opened` as it sees it, the receiver stamps each card as it arrives: the difference is
the notifier's whole path — its event queue, the routing rules and the store row, the job queue,
building the card with its signed links, the signed HTTP POST. One clock (time.monotonic) on both
sides. Every checkpoint must be notified exactly once: a missing or a second card is counted.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from bench.common import cpu_seconds, summary_ms
from bench.load import Reviewer, checkpoint_body
from bench.stack import APP_TOKEN, BENCH_REVIEWER, RABBITMQ_URL, BenchStack
from services.notifier.channels.webhook import WebhookSignatureError, verify_webhook_signature

SECRET = "bench-webhook-secret-0123456789"


class WebhookSink:
    """A minimal HTTP/1.1 server for the notifier's webhook POSTs (keep-alive, Content-Length)."""

    def __init__(self) -> None:
        self.received: dict[str, list[float]] = {}  # checkpoint id -> arrival times of its opened card
        self.refused = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    if b":" in line:
                        k, v = line.split(b":", 1)
                        headers[k.strip().lower().decode()] = v.strip().decode()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                at = time.monotonic()
                try:
                    verify_webhook_signature(SECRET, headers.get("x-hitl-signature"), body)
                    event = json.loads(body)
                    if event["type"] == "checkpoint.opened":
                        self.received.setdefault(event["checkpoint"]["id"], []).append(at)
                    status = b"204 No Content"
                except (WebhookSignatureError, ValueError, KeyError):
                    self.refused += 1
                    status = b"401 Unauthorized"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def start(self) -> WebhookSink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server:
            self.server.close()


async def notify_latency(db_kind: str, *, rate: float, duration_s: float, settle_s: float = 30.0,
                         log: Any = print) -> dict[str, Any]:
    sink = await WebhookSink().start()
    env = {"HITL_CHANNELS": json.dumps({"webhook": {"secret": SECRET}}),
           "HITL_NOTIFY": json.dumps([{"app": "demo", "targets": [{"channel": "webhook", "to": sink.url,
                                                                  "reviewer": BENCH_REVIEWER}]}])}
    result: dict[str, Any] = {"db": db_kind, "offered_rate": rate, "duration_s": duration_s, "channel": "webhook"}
    try:
        async with BenchStack(db_kind, env=env) as stack:
            stack.ps.start("notifier")
            cpu0 = {k: cpu_seconds(pid) or 0.0 for k, pid in stack.pids().items()}
            observer = Reviewer(RABBITMQ_URL, stack.namespace, auto=False)
            await observer.start()
            log(f"  notification latency {db_kind}: {rate:.0f} checkpoints/s for {duration_s:.0f}s, webhook channel")
            prefix = f"n{uuid.uuid4().hex[:8]}-"
            headers = {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"}
            opened_calls = 0
            async with httpx.AsyncClient(base_url=stack.ingest_urls[0], headers=headers, timeout=30) as http:
                async def one(i: int) -> None:
                    nonlocal opened_calls
                    body = json.loads(checkpoint_body(f"{prefix}{i}", read_timeout_s=120, timeout_s=900))
                    r = await http.post("/v1/checkpoints", json={**body, "mode": "detached"})
                    opened_calls += r.status_code == 200

                tasks = []
                start = time.monotonic()
                n = max(1, int(rate * duration_s))
                for i in range(n):  # open loop: a checkpoint every 1/rate s, whatever the answers do
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                    tasks.append(asyncio.create_task(one(i)))
                await asyncio.gather(*tasks, return_exceptions=True)
            deadline = time.monotonic() + settle_s
            ours = lambda: {run: cid for run, cid in observer.opened.items() if run.startswith(prefix)}  # noqa: E731
            done = lambda: len(ours()) >= n and all(c in sink.received for c in ours().values())  # noqa: E731
            # Two other processes' progress, polled: there is no event here to wait on.
            while time.monotonic() < deadline and not done():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a second card, if any, arrives now
            opened = ours()
            latencies = [sink.received[cid][0] - observer.opened_at[run] for run, cid in opened.items()
                         if cid in sink.received]
            await observer.close()
            cpu = {k: round(((cpu_seconds(pid) or 0.0) - cpu0.get(k, 0.0)) * 1000 / n, 2)
                   for k, pid in stack.pids().items()}  # CPU ms per checkpoint, each process
            result.update(cpu_ms_per_checkpoint=cpu, notifier_metrics=_notifier_counts(stack.ps.url("notifier")))
            result.update(checkpoints=n, accepted=opened_calls, opened_seen=len(opened),
                          notified=sum(1 for cid in opened.values() if cid in sink.received),
                          missing=sum(1 for cid in opened.values() if cid not in sink.received),
                          duplicated=sum(len(sink.received.get(cid, [])) - 1 for cid in opened.values()
                                         if len(sink.received.get(cid, [])) > 1),
                          refused_by_receiver=sink.refused, latency=summary_ms(latencies))
            log(f"    → p50 {result['latency']['p50_ms']} ms, p99 {result['latency']['p99_ms']} ms; "
                f"notified {result['notified']}/{n}, missing {result['missing']}, duplicated {result['duplicated']}")
    finally:
        await sink.close()
    return result


def _notifier_counts(base_url: str) -> dict[str, float]:
    """The notifier's own books: cards sent, calls retried (and why), messages given up."""
    import re

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        h = re.match(r'hitl_message_handling_seconds_(sum|count)\{queue="[^"]*\.(notifier|notifications)"\} (\S+)$',
                     line)
        if h:  # how long the handlers took, per queue: mean ms once divided
            out[f"handling_{h.group(2)}_{h.group(1)}"] = float(h.group(3))
        m = re.match(r"(hitl_notifications_(?:sent|retried|failed|skipped)_total)\{(.*)\} (\S+)$", line)
        if m:
            reason = re.search(r'(?:reason|kind)="([^"]+)"', m.group(2))
            what = m.group(1).removeprefix("hitl_notifications_").removesuffix("_total")
            key = f"{what}:{reason.group(1) if reason else ''}"
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out
