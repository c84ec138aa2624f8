"""Dead letters: what waits in each `<namespace>.<queue>.dlq`, and putting letters back to work.

A letter came to its DLQ from the ack policy (shared/broker/dispatch.py: `x-hitl-reason`,
`x-hitl-queue`, `x-hitl-routing-key`, `x-hitl-dead-at`) or from RabbitMQ itself when a work queue's
delivery limit was reached (`x-death`). Listing never takes a letter (Broker.peek). Replaying one
publishes it to its work queue through the default exchange — never to the exchange it first came
through, which may fan it out to other queues — with its original routing key in
`x-hitl-routing-key` (what the router dispatches on) and its retry state cleared; only when RabbitMQ
has confirmed that copy is the letter acked out of the DLQ. A crash in between leaves both: the
consumers are idempotent, so a duplicate has one effect, and nothing is lost.

Signatures travel with the letter unchanged, so a bot's decision stays the bot's. Only a letter
whose internal signature no longer verifies under the current key (the key was rotated) needs a new
one, and only with `resign=True` — the operator vouches that it is ours: otherwise anyone holding
broker credentials could launder a forged message through the DLQ. Unsigned letters are never signed.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.broker.calls import ChannelRefused
from shared.broker.errors import BrokerError
from shared.broker.lease import Lease, fresh_headers
from shared.broker.signing import BOT_HEADER, INTERNAL_HEADER, Unverified, Verifier, valid
from shared.broker.types import ROUTING_KEY_HEADER, Delivery
from shared.topology import Names, build_topology, dlq_name

RETRY_STATE = frozenset({"x-hitl-attempt", "x-hitl-waits", "x-hitl-last-error", "x-hitl-reason", "x-hitl-queue",
                         "x-hitl-dead-at", "x-death", "x-first-death-exchange", "x-first-death-queue",
                         "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                         "x-last-death-reason"})
REPLAYS_HEADER = "x-hitl-replays"  # how often this message was replayed (a loop shows here)
SECRET_FIELDS = frozenset({"form_token", "secret", "token", "checkpoint_token", "password"})
PREVIEW_CHARS = 160


class LeasingBroker(Protocol):
    """What this module needs of a broker (shared/broker/client.py and memory.py both have it)."""

    signing_key: bytes | None

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, headers: dict[Any, Any] | None = None,
                      message_id: str | None = None, correlation_id: str | None = None, reply_to: str | None = None,
                      persistent: bool = True, timeout_s: float = 30.0, content_type: str = "application/json",
                      sign: bool = True) -> None: ...

    async def peek(self, queue: str, limit: int = 100) -> list[Delivery]: ...

    def lease(self, queue: str, limit: int) -> Any: ...  # an async context manager of a Lease

    async def queue_depth(self, name: str) -> int: ...


def dead_letter_queues(names: Names, only: str | None = None) -> list[tuple[str, str]]:
    """(work queue, its DLQ) for every work queue of the topology; `only` names one, as `decisions`,
    `hitl.decisions` or `hitl.decisions.dlq`. A ValueError lists the known ones."""
    declared = {q.name for q in build_topology(names, with_notifier=True).queues}
    pairs = [(name, dlq_name(name)) for name in sorted(declared) if dlq_name(name) in declared]
    if only is None:
        return pairs
    wanted = {only, f"{names.namespace}.{only}", only.removesuffix(".dlq")}
    chosen = [p for p in pairs if p[0] in wanted or p[1] in wanted]
    if not chosen:
        raise ValueError(f"no queue {only!r}; the DLQs are: {', '.join(d for _, d in pairs)}")
    return chosen


# ---------------------------------------------------------------------- describing a letter
def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    return deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if k in SECRET_FIELDS and v else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class Letter:
    dlq: str
    work_queue: str
    delivery: Delivery
    reason: str
    routing_key: str  # the one it was first published with
    dead_at: float | None
    message_type: str
    preview: str
    sender: str  # internal | bot:<name> | stale-signature | bad-bot-signature:<name> | unsigned | unchecked

    @property
    def message_id(self) -> str | None:
        return self.delivery.message_id

    def as_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "type": self.message_type, "reason": self.reason,
                "queue": self.work_queue, "routing_key": self.routing_key, "dead_at": self.dead_at,
                "sender": self.sender, "preview": self.preview}


def sender_of(delivery: Delivery, verifier: Verifier | None) -> str:
    if verifier is None:
        return "unchecked"
    headers = delivery.headers
    if INTERNAL_HEADER in headers:
        return "internal" if valid(verifier.internal_key, delivery.body, _text(headers[INTERNAL_HEADER])) \
            else "stale-signature"
    bot = _text(headers.get(BOT_HEADER))
    if not bot:
        return "unsigned"
    try:
        verifier.sender(headers, delivery.body, bots_allowed=True)
    except Unverified:
        return f"bad-bot-signature:{bot[:24]}"
    return f"bot:{bot[:24]}"


def describe(delivery: Delivery, work_queue: str, dlq: str, verifier: Verifier | None) -> Letter:
    headers = delivery.headers
    death = _first_death(headers)
    death_keys = death.get("routing-keys")
    if ROUTING_KEY_HEADER in headers:  # "" too: what a bot publishing to the fanout exchange sends
        routing_key = _text(headers[ROUTING_KEY_HEADER]) or ""
    elif isinstance(death_keys, list) and death_keys:  # dead-lettered by RabbitMQ: the key it came with
        routing_key = _text(death_keys[0]) or ""
    else:
        routing_key = delivery.routing_key
    reason = _text(headers.get("x-hitl-reason")) or \
        (f"RabbitMQ dead-lettered it: {_text(death.get('reason'))}" if death else "no reason recorded")
    dead_at = _epoch(headers.get("x-hitl-dead-at")) or _epoch(death.get("time"))
    try:
        body: Any = json.loads(delivery.body)
    except (ValueError, RecursionError):
        body = None
    message_type = str(body.get("type")) if isinstance(body, dict) and body.get("type") else \
        ("not JSON" if body is None else "-")
    shown = json.dumps(_masked(body), ensure_ascii=False, separators=(",", ":")) if body is not None else \
        delivery.body[:PREVIEW_CHARS * 2].decode("utf-8", "replace")
    preview = " ".join(shown.split())
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    return Letter(dlq, work_queue, delivery, reason, routing_key, dead_at, message_type, preview,
                  sender_of(delivery, verifier))


@dataclass
class DeadLetters:
    work_queue: str
    dlq: str
    count: int
    letters: list[Letter]

    def as_json(self) -> dict[str, Any]:
        return {"queue": self.work_queue, "dlq": self.dlq, "count": self.count,
                "letters": [letter.as_json() for letter in self.letters]}


async def list_letters(broker: LeasingBroker, names: Names, *, queue: str | None = None, limit: int = 50,
                       verifier: Verifier | None = None) -> list[DeadLetters]:
    """Every DLQ (or one): how many letters, and the first `limit` of them, left where they are."""
    found = []
    for work, dlq in dead_letter_queues(names, queue):
        count = await _depth(broker, dlq)
        if count is None:
            continue
        peeked = await broker.peek(dlq, limit) if count and limit else []
        found.append(DeadLetters(work, dlq, count, [describe(d, work, dlq, verifier) for d in peeked]))
    return found


async def _depth(broker: LeasingBroker, dlq: str) -> int | None:
    """Letters in a DLQ; None when it was never declared (the notifier's, where none has run)."""
    try:
        return await broker.queue_depth(dlq)
    except ChannelRefused:
        return None


# ---------------------------------------------------------------------- replaying
@dataclass
class ReplayReport:
    replayed: list[Letter] = field(default_factory=list)
    skipped: list[tuple[Letter, str]] = field(default_factory=list)
    failed: list[tuple[Letter, str]] = field(default_factory=list)  # not confirmed: still in the DLQ
    missing: list[str] = field(default_factory=list)  # asked-for ids in no DLQ
    left: dict[str, int] = field(default_factory=dict)  # DLQ → letters still there (not selected or skipped)


def replay_headers(letter: Letter) -> dict[str, Any]:
    """The letter's headers for its second life: signatures and first-seen kept, retry state cleared
    (attempts start again from 1), the original routing key recorded, replays counted."""
    headers = {k: v for k, v in fresh_headers(letter.delivery).items() if k not in RETRY_STATE}
    headers[ROUTING_KEY_HEADER] = letter.routing_key
    try:
        headers[REPLAYS_HEADER] = int(headers.get(REPLAYS_HEADER) or 0) + 1
    except (TypeError, ValueError):
        headers[REPLAYS_HEADER] = 1
    return headers


def why_not(letter: Letter, resign: bool, can_sign: bool) -> str | None:
    """Why this letter is left in the DLQ, or None to replay it."""
    if letter.sender == "unsigned":
        return "unsigned: it would be dead-lettered again (only our processes and configured bots may publish)"
    if letter.sender == "stale-signature" and not resign:
        return ("its internal signature does not verify under the current key (was the key rotated?): "
                "replay with --resign if you know it is ours")
    if letter.sender == "stale-signature" and not can_sign:
        return "--resign needs the internal key (HITL_INTERNAL_KEY, or the store)"
    return None


async def _replay_one(broker: LeasingBroker, held: Lease, letter: Letter, resign: bool, report: ReplayReport) -> None:
    sign = resign and letter.sender == "stale-signature"
    headers = replay_headers(letter)
    if sign:
        headers.pop(INTERNAL_HEADER, None)
    d = letter.delivery
    try:
        await broker.publish("", letter.work_queue, d.body, headers=headers, message_id=d.message_id,
                             correlation_id=d.correlation_id, reply_to=d.reply_to, timeout_s=15, sign=sign)
    except BrokerError as exc:  # not confirmed: the letter stays in the DLQ (it is not acked)
        report.failed.append((letter, f"{type(exc).__name__}: {exc}"))
        return
    await held.ack(d)  # only now: a crash before this line leaves a duplicate, never a loss
    report.replayed.append(letter)


async def replay(broker: LeasingBroker, names: Names, *, queue: str | None = None, ids: Collection[str] = (),
                 everything: bool = False, dry_run: bool = False, resign: bool = False,
                 verifier: Verifier | None = None, limit: int = 10_000) -> ReplayReport:
    """Letters back to their work queues: those with a message id in `ids`, or all with `everything`.

    Each DLQ is leased whole (up to `limit` letters): letters left behind stay held until the end, so
    that none is looked at twice, then go back. A lost connection mid-way raises BrokerError: what
    was not acked went back to its DLQ. `left` counts from the depth when the replay started."""
    if not ids and not everything:
        raise ValueError("name the letters (message ids) to replay, or all of them")
    wanted, seen = set(ids), set()
    report = ReplayReport()
    can_sign = broker.signing_key is not None
    for work, dlq in dead_letter_queues(names, queue):
        count = await _depth(broker, dlq)
        if count is None:
            continue
        replayed_before = len(report.replayed)
        async with broker.lease(dlq, limit) as held:  # until the DLQ answers empty, not just `count`
            for delivery in list(held.deliveries):
                letter = describe(delivery, work, dlq, verifier)
                if not everything and letter.message_id not in wanted:
                    continue
                seen.add(letter.message_id or "")
                reason = why_not(letter, resign, can_sign)
                if reason is not None:
                    report.skipped.append((letter, reason))
                elif dry_run:
                    report.replayed.append(letter)
                else:
                    await _replay_one(broker, held, letter, resign, report)
        moved = 0 if dry_run else len(report.replayed) - replayed_before
        report.left[dlq] = max(0, count - moved)
    report.missing = sorted(wanted - seen)
    return report
