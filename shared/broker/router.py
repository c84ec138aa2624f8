"""Declared message handlers (STYLE 11), in the spirit of FastStream's `@broker.subscriber` and
dramatiq's actors. A service lists its handlers once:

    handlers = Handlers()

    class DeciderService:
        @handlers.on("checkpoints", CHECKPOINT_REQUESTED, CheckpointRequested, store=True)
        def on_request(self, msg: CheckpointRequested, ctx: Context) -> list[Outbound]: ...

and `handlers.bind(service, broker, names, verifier)` attaches one consumer per queue. For every
delivery the router: checks who sent it (shared/broker/signing.py), finds the handler by routing key,
validates the body into the declared model (invalid → `Reject`, to the DLQ with the reason), binds
the log context, runs the handler — in the store executor when declared `store=True`, where a store
outage becomes an uncounted `RetryLater` (retried until the store is back) —, publishes the returned
messages with confirms, and only then lets the delivery be acked.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.broker.errors import Reject, RetryLater
from shared.broker.outbound import publish_all
from shared.broker.signing import Sender, Unverified, Verifier
from shared.broker.types import Delivery
from shared.store.errors import StoreUnavailable
from shared.topology import Names

ANY_KEY = "#"  # a handler for every routing key of its queue (the bots' fanout exchange has none)
T = TypeVar("T")
STORE_RETRY_S = 1.0


def validation_summary(exc: ValidationError) -> str:
    """The first few problems of a body, one line: what a DLQ reason or a log line says."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


@dataclass(frozen=True)
class Context:
    """What a handler may know about the delivery besides its message."""

    delivery: Delivery
    sender: Sender

    @property
    def reply_to(self) -> str | None:
        return self.delivery.reply_to

    @property
    def correlation_id(self) -> str | None:
        return self.delivery.correlation_id

    @property
    def redelivered(self) -> bool:
        return self.delivery.redelivered


@dataclass(frozen=True)
class Route:
    queue: str  # a queue of Names by attribute: "checkpoints_queue" is written "checkpoints"
    routing_key: str
    model: type[BaseModel]
    fn: Callable[..., Any]
    store: bool  # runs in the store executor (a thread); else on the event loop (async)
    bots: bool  # bots may send it (signed with their own secret), besides our own processes

    @property
    def message_type(self) -> str:
        """What the handler takes, for DLQ reasons: the model's `type`, else the routing key."""
        field = self.model.model_fields.get("type")
        default = field.default if field is not None else None
        return default if isinstance(default, str) else self.routing_key


class Handlers:
    """The declarations of one service."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def on(self, queue: str, routing_key: str, model: type[BaseModel], *, store: bool = False,
           bots: bool = False) -> Callable[[T], T]:
        def declare(fn: T) -> T:
            if any(r.queue == queue and r.routing_key == routing_key for r in self.routes):
                raise ValueError(f"two handlers for {routing_key!r} on {queue!r}")
            self.routes.append(Route(queue, routing_key, model, fn, store, bots))  # type: ignore[arg-type]
            return fn
        return declare

    def bind(self, service: Any, broker: Any, names: Names, verifier: Verifier) -> Router:
        router = Router(service, broker, names, verifier, self.routes)
        for queue in sorted({r.queue for r in self.routes}):
            broker.consume(router.queue_name(queue), router.dispatch)
        return router


class Router:
    def __init__(self, service: Any, broker: Any, names: Names, verifier: Verifier, routes: list[Route]) -> None:
        self.service, self.broker, self.names, self.verifier = service, broker, names, verifier
        self.routes = {(self.queue_name(r.queue), r.routing_key): r for r in routes}

    def queue_name(self, queue: str) -> str:
        return getattr(self.names, f"{queue}_queue")

    def route_of(self, delivery: Delivery) -> Route:
        key = delivery.original_routing_key
        route = self.routes.get((delivery.queue, key)) or self.routes.get((delivery.queue, ANY_KEY))
        if route is None:
            raise Reject(f"no handler for routing key {key!r} on {delivery.queue}")
        return route

    async def dispatch(self, delivery: Delivery) -> None:
        route = self.route_of(delivery)
        try:
            sender = self.verifier.sender(delivery.headers, delivery.body, bots_allowed=route.bots)
        except Unverified as exc:
            metrics.messages_handled.labels(delivery.queue, "unverified").inc()
            raise Reject(f"{exc.reason} ({route.message_type})") from None
        try:
            msg = route.model.model_validate_json(delivery.body)
        except ValidationError as exc:
            metrics.messages_handled.labels(delivery.queue, "invalid").inc()
            raise Reject(f"invalid {route.message_type}: {validation_summary(exc)}") from None
        _bind_log_context(msg)
        method = route.fn.__get__(self.service)
        ctx = Context(delivery, sender)
        if route.store:
            outbound = await in_store(self.broker, method, msg, ctx)
        else:
            outbound = await method(msg, ctx)
        await publish_all(self.broker, list(outbound or ()))


async def in_store(broker: Any, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the store executor, with this delivery's log context. A store that is not
    there is no fault of the message: it waits (uncounted) and comes back until the store does.

    A connection that died under the transaction (PostgreSQL restarted, a standby promoted) is tried
    once more at once: its rollback left nothing behind, the pool is fresh, and running the handler
    again is what a redelivery would do anyway. Only if that fails too does the message wait."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    try:
        try:
            return await loop.run_in_executor(broker.executor, lambda: context.run(fn, *args))
        except StoreUnavailable as exc:
            if not exc.connection_lost:
                raise
            metrics.store_retries.inc()
            return await loop.run_in_executor(broker.executor, lambda: context.run(fn, *args))
    except StoreUnavailable as exc:
        raise RetryLater(f"store unavailable: {exc}", delay_s=STORE_RETRY_S, counted=False) from exc


def _bind_log_context(msg: BaseModel) -> None:
    fields = {"run_id": getattr(msg, "workflow_run_id", None), "checkpoint_id": getattr(msg, "checkpoint_id", None)}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v})

