"""The broker topology, declared once, as data, applied idempotently at every start.

Naming rule for a work queue Q: `Q` (quorum), `Q.dlq` (its dead letters, quorum), `Q.delay.<tier>`
(quorum, queue TTL, dead-letters back into Q: how a handler's RetryLater waits without a timer in
any process's memory).
"""
from __future__ import annotations

from dataclasses import dataclass, field

EVENTS = "hitl.events"  # topic: routing key = event type, e.g. checkpoint.opened, run.status.failed
DECISIONS = "hitl.decisions"  # fanout: bots publish decision JSON here, any routing key
COMMANDS = "hitl.commands"  # direct: ingest → decider requests
DLX = "hitl.dlx"  # direct: routing key = the queue whose letters died

CHECKPOINTS_QUEUE = "hitl.checkpoints"
DECISIONS_QUEUE = "hitl.decisions"
CHECKPOINT_REQUESTED = "checkpoint.requested"

# Retry tiers (seconds) for RetryLater: the smallest tier >= the requested delay is used.
DELAY_TIERS = (1, 5, 30, 300)
# Backstop against a message that kills its consumer every time (quorum queues count redeliveries).
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str  # direct | fanout | topic


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict = field(default_factory=dict)
    durable: bool = True


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str = ""


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


def delay_queue_name(queue: str, tier: int) -> str:
    return f"{queue}.delay.{tier}s"


def delay_tier(delay_s: float) -> int:
    return next((t for t in DELAY_TIERS if t >= delay_s), DELAY_TIERS[-1])


def work_queue(name: str) -> tuple[list[Queue], list[Binding]]:
    """A quorum work queue with its DLQ and delay tiers."""
    queues = [
        Queue(name, {"x-queue-type": "quorum", "x-dead-letter-exchange": DLX,
                     "x-dead-letter-routing-key": name, "x-delivery-limit": DELIVERY_LIMIT}),
        Queue(dlq_name(name), {"x-queue-type": "quorum"}),
    ]
    bindings = [Binding(DLX, dlq_name(name), name)]
    for tier in DELAY_TIERS:
        queues.append(Queue(delay_queue_name(name, tier), {
            "x-queue-type": "quorum",
            "x-message-ttl": tier * 1000,
            # Expired letters go back to the work queue through the default exchange.
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }))
    return queues, bindings


def build_topology() -> Topology:
    exchanges = (
        Exchange(EVENTS, "topic"),
        Exchange(DECISIONS, "fanout"),
        Exchange(COMMANDS, "direct"),
        Exchange(DLX, "direct"),
    )
    queues: list[Queue] = []
    bindings: list[Binding] = []
    for name in (CHECKPOINTS_QUEUE, DECISIONS_QUEUE):
        q, b = work_queue(name)
        queues += q
        bindings += b
    bindings += [
        Binding(COMMANDS, CHECKPOINTS_QUEUE, CHECKPOINT_REQUESTED),
        Binding(DECISIONS, DECISIONS_QUEUE, ""),
    ]
    return Topology(exchanges, tuple(queues), tuple(bindings))


TOPOLOGY = build_topology()
