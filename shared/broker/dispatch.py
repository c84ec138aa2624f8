"""The ack policy, explicit: what happens to a delivery after its handler ran.

- handler returns            → ack
- handler raises RetryLater  → re-published to `<queue>.delay.<tier>` with attempt + 1, then ack;
                               past `max_attempts` → dead-lettered with the reason. A RetryLater that
                               is not counted (the store is down) keeps its attempt count and backs off
                               up to WAIT_CAP_S: it is retried until the cause is gone
- handler raises Reject      → published to `<queue>.dlq` with the reason in headers, then ack
- anything else              → dead-lettered with the exception as the reason (never a requeue loop)
If the re-publish itself cannot be confirmed, the delivery is not acked: the broker redelivers it.
Every re-publish records the original routing key (ROUTING_KEY_HEADER), so a delayed or replayed
message reaches the same handler.
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Protocol

import structlog

from shared import metrics
from shared.broker.errors import PublishNotConfirmed, Reject, RetryLater
from shared.broker.types import ROUTING_KEY_HEADER, Consumer, Delivery
from shared.logs import get_logger
from shared.topology import Topology, delay_queue_name, delay_tier

log = get_logger(__name__)
ACK = object()
WAITS_HEADER = "x-hitl-waits"  # uncounted retries so far (store down): only for the backoff
WAIT_CAP_S = 30.0


class SettlingBroker(Protocol):
    topology: Topology
    max_attempts: int

    async def run_handler(self, handler: Any, delivery: Delivery) -> None: ...

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict[str, Any] | None = ...,
                      message_id: str | None = ..., correlation_id: str | None = ..., reply_to: str | None = ...,
                      persistent: bool = ..., timeout_s: float = ..., content_type: str = ...,
                      sign: bool = ...) -> None: ...


async def handle_delivery(broker: SettlingBroker, consumer: Consumer, delivery: Delivery) -> object | None:
    """Run the handler and settle the delivery. Returns ACK to ack, None to leave it unacked."""
    structlog.contextvars.bind_contextvars(queue=delivery.queue, message_id=delivery.message_id)
    queue = delivery.queue if consumer.declare is None else "private"
    metrics.messages_consumed.labels(queue).inc()
    started, outcome, settle = time.perf_counter(), "acked", None
    try:
        try:
            await broker.run_handler(consumer.handler, delivery)
            settle = ACK
        finally:
            metrics.message_handling.labels(queue).observe(time.perf_counter() - started)
    except RetryLater as exc:
        if not exc.counted:
            outcome = "waiting"
        else:
            outcome = "gave_up" if delivery.attempt + 1 > broker.max_attempts else "retried"
        settle = await _retry_later(broker, delivery, exc)
    except Reject as exc:
        outcome = "rejected"
        settle = await _dead_letter(broker, delivery, exc.reason)
    except Exception as exc:  # unexpected: dead-letter with the reason, never requeue forever
        log.error("delivery.handler_crashed", error=f"{type(exc).__name__}: {exc}"[:500],
                  trace=traceback.format_exc(limit=5))
        outcome = "failed"
        settle = await _dead_letter(broker, delivery, f"unexpected {type(exc).__name__}: {exc}")
    finally:
        structlog.contextvars.unbind_contextvars("queue", "message_id", "checkpoint_id", "run_id")
    if settle is None:  # the re-publish was not confirmed: left unacked, the broker redelivers it
        outcome = "unsettled"
    elif outcome in ("rejected", "failed", "gave_up"):
        metrics.messages_dead_lettered.labels(queue).inc()
    metrics.messages_settled.labels(queue, outcome).inc()
    return settle


def _forward_headers(delivery: Delivery, **extra: Any) -> dict[str, Any]:
    headers = dict(delivery.headers)
    headers.setdefault("x-hitl-first-seen", int(time.time()))
    headers.setdefault(ROUTING_KEY_HEADER, delivery.routing_key)
    headers.update(extra)
    return headers


async def _republish(broker: SettlingBroker, delivery: Delivery, exchange: str, routing_key: str,
                     headers: dict[str, Any]) -> object | None:
    try:
        await broker.publish(exchange, routing_key, delivery.body, headers=headers, message_id=delivery.message_id,
                             correlation_id=delivery.correlation_id, reply_to=delivery.reply_to, timeout_s=10,
                             sign=False)
        return ACK
    except PublishNotConfirmed as exc:
        log.warning("delivery.settle_failed", error=str(exc))
        return None


async def _retry_later(broker: SettlingBroker, delivery: Delivery, exc: RetryLater) -> object | None:
    if not exc.counted:
        waits = int(delivery.headers.get(WAITS_HEADER, 0)) + 1
        delay = min(exc.delay_s * 2 ** min(waits - 1, 8), WAIT_CAP_S)
        tier = delay_tier(delay)
        log.info("delivery.waiting", reason=exc.reason[:300], waits=waits, delay_s=tier)
        headers = _forward_headers(delivery, **{WAITS_HEADER: waits, "x-hitl-last-error": exc.reason[:500]})
        return await _republish(broker, delivery, "", delay_queue_name(delivery.queue, tier), headers)
    attempt = delivery.attempt + 1
    if attempt > broker.max_attempts:
        return await _dead_letter(broker, delivery, f"gave up after {delivery.attempt} attempts: {exc.reason}")
    tier = delay_tier(exc.delay_s)
    log.info("delivery.retry_later", reason=exc.reason[:300], attempt=attempt, delay_s=tier)
    headers = _forward_headers(delivery, **{"x-hitl-attempt": attempt, "x-hitl-last-error": exc.reason[:500]})
    return await _republish(broker, delivery, "", delay_queue_name(delivery.queue, tier), headers)


async def _dead_letter(broker: SettlingBroker, delivery: Delivery, reason: str) -> object | None:
    log.warning("delivery.dead_lettered", reason=reason[:500])
    headers = _forward_headers(delivery, **{"x-hitl-reason": reason[:1000], "x-hitl-queue": delivery.queue,
                                            "x-hitl-dead-at": int(time.time())})
    return await _republish(broker, delivery, broker.topology.dlx, delivery.queue, headers)
