"""The broker topology, declared once, as data, applied idempotently at every start.

Naming rule for a work queue Q: `Q` (quorum), `Q.dlq` (its dead letters, quorum), `Q.delay.<tier>`
(quorum, queue TTL, dead-letters back into Q: how a handler's RetryLater waits without a timer in
any process's memory).

Clusters: every quorum queue gets `x-quorum-initial-group-size` replicas when the deployment says how
many (shared/broker/nodes.py: one per node URL, at most 3); a queue survives the loss of a minority of
them. The work queues carry `x-consumer-timeout` (CONSUMER_TIMEOUT_MS).

Who declares what: every process declares the core (the work queues of decider and poller, the
exchanges). The notifier's two queues and its event bindings are declared by the notifier alone
(`with_notifier`), so a deployment that runs no notifier routes no events into a queue nobody
reads — they would pile up there for good, until RabbitMQ's memory or disk alarm stopped every
publisher. Once the notifier has started, its queue stays bound while it is down: nothing meant for
it is lost across its restarts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CHECKPOINT_REQUESTED = "checkpoint.requested"
RUN_ENDED = "run.ended"  # → decider (cancels the run's open checkpoints)
RUN_TRACK = "run.track"  # → poller
RUN_EVENT = "run.event"  # → poller
RUN_STREAMS_ALIVE = "run.streams_alive"  # → poller (the live streams a process is reading)
FORM_DELIVER = "form.deliver"  # → poller (submit a decided Dify form)
FORM_REPORT = "form.report"  # → decider (what became of it)
CHECKPOINT_COMMAND = "checkpoint.command"  # → decider (claim, release, reassign)
NOTIFICATION_DELIVER = "notification.deliver"  # → notifier (send or update one card on one platform)
# The checkpoint events the notifier acts on (routing keys on hitl.events). The last three come from
# the decider's decision policies (reminders, the warning before a deadline, escalations).
NOTIFIER_EVENTS = ("checkpoint.opened", "checkpoint.resolved", "checkpoint.expired", "checkpoint.cancelled",
                   "checkpoint.reminder", "checkpoint.deadline_near", "checkpoint.escalated")


@dataclass(frozen=True)
class Names:
    """Every exchange and queue name, under one namespace (HITL_NAMESPACE, default "hitl"), so that
    tests and side-by-side deployments on one broker never share a queue by accident."""

    namespace: str = "hitl"

    @property
    def events(self) -> str:  # topic: routing key = event type, e.g. checkpoint.opened, run.status.failed
        return f"{self.namespace}.events"

    @property
    def decisions(self) -> str:  # fanout: bots publish decision JSON here, any routing key
        return f"{self.namespace}.decisions"

    @property
    def commands(self) -> str:  # direct: ingest → decider requests
        return f"{self.namespace}.commands"

    @property
    def dlx(self) -> str:  # direct: routing key = the queue whose letters died
        return f"{self.namespace}.dlx"

    @property
    def checkpoints_queue(self) -> str:
        return f"{self.namespace}.checkpoints"

    @property
    def decisions_queue(self) -> str:
        return f"{self.namespace}.decisions"

    @property
    def runs_queue(self) -> str:  # the poller's: run.track, run.event, and checkpoint events it acts on
        return f"{self.namespace}.runs"

    @property
    def notifier_queue(self) -> str:  # the notifier's own copy of the checkpoint events it acts on
        return f"{self.namespace}.notifier"

    @property
    def notifications_queue(self) -> str:  # one job per card to send or update, on any platform
        return f"{self.namespace}.notifications"


# Retry tiers (seconds) for RetryLater: the smallest tier >= the requested delay is used.
DELAY_TIERS = (1, 5, 30, 300)
# Backstop against a message that kills its consumer every time (quorum queues count redeliveries).
DELIVERY_LIMIT = 20
# How long a consumer may hold one delivery unacked before RabbitMQ takes it back (closing the channel;
# the message is redelivered, and counts toward DELIVERY_LIMIT). Set deliberately rather than left to
# the broker-wide default: no handler ever holds a delivery across a human wait — a checkpoint waits
# in the store, a held HTTP call waits on a reply queue, a retry waits in a delay queue — so a
# delivery is held only while it is handled: store statements (15 s timeout), confirmed publishes
# (30 s), a Dify call (HITL_DIFY_TIMEOUT_S), behind at most a prefetch window of others. Ten minutes
# is far beyond that and still returns the message of a stuck consumer. RabbitMQ reads the argument
# from 3.12 on; older nodes apply their `consumer_timeout` setting (30 minutes by default).
CONSUMER_TIMEOUT_MS = 10 * 60 * 1000


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
    dlx: str


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


def delay_queue_name(queue: str, tier: int) -> str:
    return f"{queue}.delay.{tier}s"


def delay_tier(delay_s: float) -> int:
    return next((t for t in DELAY_TIERS if t >= delay_s), DELAY_TIERS[-1])


def quorum(group_size: int | None) -> dict:
    """The arguments every quorum queue starts from."""
    args: dict = {"x-queue-type": "quorum"}
    if group_size is not None:
        args["x-quorum-initial-group-size"] = group_size
    return args


def work_queue(name: str, dlx: str, group_size: int | None = None) -> tuple[list[Queue], list[Binding]]:
    """A quorum work queue with its DLQ and delay tiers."""
    queues = [
        Queue(name, {**quorum(group_size), "x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": name,
                     "x-delivery-limit": DELIVERY_LIMIT, "x-consumer-timeout": CONSUMER_TIMEOUT_MS}),
        Queue(dlq_name(name), quorum(group_size)),
    ]
    bindings = [Binding(dlx, dlq_name(name), name)]
    for tier in DELAY_TIERS:
        queues.append(Queue(delay_queue_name(name, tier), {
            **quorum(group_size),
            "x-message-ttl": tier * 1000,
            # Expired letters go back to the work queue through the default exchange.
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }))
    return queues, bindings


def build_topology(names: Names, group_size: int | None = None, *, with_notifier: bool = False) -> Topology:
    """`group_size`: replicas of every quorum queue (None: RabbitMQ's default)."""
    exchanges = (
        Exchange(names.events, "topic"),
        Exchange(names.decisions, "fanout"),
        Exchange(names.commands, "direct"),
        Exchange(names.dlx, "direct"),
    )
    queues: list[Queue] = []
    bindings: list[Binding] = []
    work = [names.checkpoints_queue, names.decisions_queue, names.runs_queue]
    if with_notifier:
        work += [names.notifier_queue, names.notifications_queue]
    for name in work:
        q, b = work_queue(name, names.dlx, group_size)
        queues += q
        bindings += b
    bindings += [
        Binding(names.commands, names.checkpoints_queue, CHECKPOINT_REQUESTED),
        Binding(names.decisions, names.decisions_queue, ""),
        Binding(names.commands, names.checkpoints_queue, RUN_ENDED),
        Binding(names.commands, names.runs_queue, RUN_TRACK),
        Binding(names.commands, names.runs_queue, RUN_EVENT),
        Binding(names.commands, names.runs_queue, RUN_STREAMS_ALIVE),
        Binding(names.commands, names.runs_queue, FORM_DELIVER),
        Binding(names.commands, names.checkpoints_queue, FORM_REPORT),
        Binding(names.commands, names.checkpoints_queue, CHECKPOINT_COMMAND),
        # The poller tracks the run of every checkpoint and continues decided detached ones.
        Binding(names.events, names.runs_queue, "checkpoint.opened"),
        Binding(names.events, names.runs_queue, "checkpoint.resolved"),
    ]
    if with_notifier:
        # The notifier: events in, one job per platform message out. A job that fails waits in the
        # delay tiers, so a platform that is down or rate-limits never holds up the others.
        bindings += [*(Binding(names.events, names.notifier_queue, key) for key in NOTIFIER_EVENTS),
                     Binding(names.commands, names.notifications_queue, NOTIFICATION_DELIVER)]
    return Topology(exchanges, tuple(queues), tuple(bindings), names.dlx)
