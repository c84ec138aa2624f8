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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.broker.batches import StoreBatches, in_store
from shared.broker.errors import Reject
from shared.broker.outbound import Handled, publish_all
from shared.broker.signing import Sender, Unverified, Verifier
from shared.broker.types import Delivery
from shared.topology import Names

ANY_KEY = "#"  # a handler for every routing key of its queue (the bots' fanout exchange has none)
T = TypeVar("T")


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
        # A service whose store can share a transaction among handlers (shared/store/batch.py) says so
        # with `store_batch()`: its store handlers' deliveries then run in batches (batches.py).
        opened = getattr(service, "store_batch", None)
        limits = getattr(service, "store_batch_limits", (1, 1))
        self.batches = StoreBatches(broker, opened, max_items=limits[0], in_flight=limits[1]) if opened else None

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
        if route.store and self.batches is not None:
            outbound = await self.batches.run(method, msg, ctx)
        elif route.store:
            outbound = await in_store(self.broker, method, msg, ctx)
        else:
            outbound = await method(msg, ctx)
        if isinstance(outbound, Handled):  # what to tell once committed: here, once, on the event loop
            if outbound.after is not None:
                outbound.after()
            outbound = outbound.outbound
        await publish_all(self.broker, list(outbound or ()))


def _bind_log_context(msg: BaseModel) -> None:
    fields = {"run_id": getattr(msg, "workflow_run_id", None), "checkpoint_id": getattr(msg, "checkpoint_id", None)}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v})

