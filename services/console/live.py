"""Live updates: one exclusive, auto-delete queue per console process bound to `hitl.events` with "#",
fanned out in-process to every connected browser over Server-Sent Events.

Browsers get a small summary of each event (type, ids, status), never whole checkpoints: a page that
cares re-reads what it shows — and only events of the apps their reviewer may see. After a broker
reconnect (events may have been missed) every browser is told to `resync`.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import StreamingResponse

from shared.access import Scope, in_scope
from shared.broker import Delivery
from shared.broker.signing import Unverified, Verifier
from shared.logs import get_logger
from shared.store.errors import StoreUnavailable
from shared.topology import Names, Queue

log = get_logger(__name__)
sse_clients = Gauge("hitl_console_sse_clients", "Browsers connected to the console's event stream")
events_relayed = Counter("hitl_console_events_total", "Events from hitl.events relayed to browsers", ["kind"])
CLIENT_BUFFER = 256


def summary(routing_key: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a browser needs to decide whether to refresh: no outputs, no form content, no secrets."""
    kind = body.get("type") or routing_key
    out: dict[str, Any] = {"type": kind, "at": body.get("occurred_at")}
    cp = body.get("checkpoint")
    if isinstance(cp, dict):
        out.update(app=cp.get("app"), checkpoint_id=cp.get("id"), run_id=cp.get("workflow_run_id"),
                   node_id=cp.get("node_id"), round=cp.get("round"), status=cp.get("status"), action=cp.get("action"),
                   decided_by=cp.get("decided_by"), claimed_by=cp.get("claimed_by"),
                   progress=(cp.get("tally") or {}).get("progress") if isinstance(cp.get("tally"), dict) else None)
    run = body.get("run")
    if isinstance(run, dict):
        out.update(app=run.get("app"), run_id=run.get("id"), status=run.get("status"))
    node = body.get("node")
    if isinstance(node, dict):
        out.update(node_id=node.get("node_id"), node_status=node.get("status"))
    decision = body.get("decision")
    if isinstance(decision, dict) and decision.get("code"):
        out.update(code=decision.get("code"), actor=decision.get("actor"))
    return out


class EventHub:
    def __init__(self, broker: Any, names: Names, keepalive_s: float = 15.0, verifier: Verifier | None = None) -> None:
        self.broker = broker
        self.keepalive_s = keepalive_s
        self.verifier = verifier
        self.clients: dict[asyncio.Queue, Scope] = {}
        self.closed = False
        self.queue = f"{names.namespace}.console.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}.events"
        broker.consume(self.queue, self._on_event, declare=Queue(self.queue, durable=False), exclusive=True,
                       auto_ack=True, prefetch=500, bindings=((names.events, "#"),))
        broker.on_reconnect(self._resync)

    async def _on_event(self, delivery: Delivery) -> None:
        if self.verifier is not None:
            try:
                self.verifier.sender(delivery.headers, delivery.body, bots_allowed=False)
            except Unverified:
                return  # not from our processes: nothing to show anyone
        try:
            body = json.loads(delivery.body)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        item = summary(delivery.routing_key, body)
        events_relayed.labels(item["type"].split(".")[0]).inc()
        self.publish(item)

    async def _resync(self) -> None:
        self.publish({"type": "resync"})

    def publish(self, item: dict[str, Any]) -> None:
        app = item.get("app")
        for client, scope in list(self.clients.items()):
            if item["type"] != "resync" and not (isinstance(app, str) and in_scope(scope, app)):
                continue  # another app's event: this reviewer may not even know it exists
            try:
                client.put_nowait(item)
            except asyncio.QueueFull:  # a slow browser: drop what it missed, tell it to re-read
                while not client.empty():
                    client.get_nowait()
                client.put_nowait({"type": "resync"})

    def subscribe(self, scope: Scope) -> asyncio.Queue:
        client: asyncio.Queue = asyncio.Queue(CLIENT_BUFFER)
        self.clients[client] = scope
        sse_clients.set(len(self.clients))
        return client

    def unsubscribe(self, client: asyncio.Queue) -> None:
        self.clients.pop(client, None)
        sse_clients.set(len(self.clients))

    def close(self) -> None:
        """End every stream (shutdown): browsers reconnect to another replica or when we are back."""
        self.closed = True
        for client in list(self.clients):
            while not client.empty():
                client.get_nowait()
            client.put_nowait(None)

    async def still_signed_in(self, request: Request, session: Any) -> bool:
        """The stream's session is still live in the store (a sign-out elsewhere ends the stream)."""
        if session is None:
            return True
        try:
            return await asyncio.to_thread(request.app.state.sessions.lookup, session.token) is not None
        except StoreUnavailable:
            return True  # the store's outage is not a sign-out; the next check decides

    async def stream(self, request: Request, scope: Scope, session: Any = None):
        client = self.subscribe(scope)
        try:
            yield "retry: 1500\n\n"
            yield f"event: hello\ndata: {json.dumps({'broker': self.broker.ready})}\n\n"
            while not self.closed:
                try:
                    item = await asyncio.wait_for(client.get(), self.keepalive_s)
                except TimeoutError:
                    if not await self.still_signed_in(request, session):
                        yield "event: signed_out\ndata: {}\n\n"
                        break
                    yield ": keepalive\n\n"
                    continue
                if item is None:
                    break
                yield f"event: hitl\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
        finally:
            self.unsubscribe(client)

    def response(self, request: Request, scope: Scope, session: Any = None) -> StreamingResponse:
        return StreamingResponse(self.stream(request, scope, session), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
