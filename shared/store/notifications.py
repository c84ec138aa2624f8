"""The notifier's rows: the platform messages to send once, the callbacks and link uses it took.

A notification is one platform operation that must happen once: a **card** for (checkpoint,
recipient, event), or the **update** of a sent card after its checkpoint closed. Its unique key makes
a redelivered event plan nothing new; a sender claims a row with a lease (`sending`), so a duplicate
job for it waits instead of sending twice, and a sender that died is replaced once its lease ends.

Closing and sending meet on the card row itself: `close()` marks the cards of a checkpoint closed
and `mark_sent()` returns that mark, both as one UPDATE of the row, so whichever runs second sees
the other — a card sent while its checkpoint closed still gets its update.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from sqlalchemy import Connection, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.store.rows import as_row, as_rows
from shared.store.tables import notification_callbacks, notification_link_nonces, notifications

n = notifications.c
cb = notification_callbacks.c
PENDING, SENDING, SENT, SKIPPED, FAILED = "pending", "sending", "sent", "skipped", "failed"
# Channels whose card can be edited in place (each card gets its own update); the others (email,
# DingTalk's robot, webhooks) say the outcome once per recipient, as a new message.
EDITS_IN_PLACE = frozenset({"slack", "feishu", "wecom"})
ONCE = ["checkpoint_id", "channel", "address_key", "event"]

# Every card goes through plan → claim → mark_sent: prebuilt statements with bound parameters (building
# one per call cost more CPU than the database). WHERE parameters are named "b_…"; SET names are columns.
_PLAN = {name: dialect.insert(notifications).on_conflict_do_nothing(index_elements=ONCE)
         for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_PENDING_OF = select(notifications).where(n.checkpoint_id == bindparam("b_cp"), n.status == PENDING)
_GET = select(notifications).where(n.id == bindparam("b_id"))
_CLAIM = (update(notifications)
          .where(n.id == bindparam("b_id"),
                 or_(n.status == PENDING, and_(n.status == SENDING, or_(n.lease_until < bindparam("b_now"),
                                                                       n.lease_owner == bindparam("b_owner")))))
          .values(attempts=n.attempts + 1).returning(*notifications.c))
_SENT = update(notifications).where(n.id == bindparam("b_id")).returning(*notifications.c)
_RELEASE = update(notifications).where(n.id == bindparam("b_id"), n.status == SENDING)
_FINISH = update(notifications).where(n.id == bindparam("b_id"))


class NotificationRow(TypedDict):
    id: str
    checkpoint_id: str
    app: str
    event: str
    kind: str  # card | update
    parent_id: str | None
    channel: str
    address: str
    address_key: str
    target_kind: str
    reviewer: str | None
    status: str
    lease_until: float | None
    lease_owner: str | None
    attempts: int
    last_error: str | None
    ref: dict[str, Any] | None
    message_key: str | None
    update_token: str | None
    closed: bool
    event_at: float | None
    created_at: float
    sent_at: float | None
    updated_at: float


class CallbackRow(TypedDict):
    id: int
    channel: str
    idem_key: str | None
    at: float
    platform_user: str | None
    reviewer: str | None
    checkpoint_id: str | None
    action: str | None
    outcome: str
    code: str | None
    message: str | None


@dataclass(frozen=True)
class Recipient:
    """Where one card goes: a channel, the platform address, and whom its links decide as."""

    channel: str
    address: str
    target_kind: Literal["user", "group"]
    reviewer: str | None = None


def address_key(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def _insert(conn: Connection):
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _values(checkpoint_id: str, app: str, event: str, kind: str, r: Recipient, now: float, event_at: float | None,
            parent_id: str | None = None) -> dict[str, Any]:
    return dict(id=str(uuid.uuid4()), checkpoint_id=checkpoint_id, app=app, event=event, kind=kind,
                parent_id=parent_id, channel=r.channel, address=r.address, address_key=address_key(r.address),
                target_kind=r.target_kind, reviewer=r.reviewer, status=PENDING, attempts=0, closed=False,
                event_at=event_at, created_at=now, updated_at=now)


def _plan(conn: Connection, values: list[dict[str, Any]]) -> list[NotificationRow]:
    """Insert what is new; return every planned row that still waits to be sent (new or left
    pending by an attempt that died before its jobs went out)."""
    if not values:
        return []
    conn.execute(_PLAN[conn.dialect.name], values)
    wanted = {tuple(v[k] for k in ONCE) for v in values}
    rows: list[NotificationRow] = []
    for cp in sorted({v["checkpoint_id"] for v in values}):
        rows += [r for r in as_rows(conn.execute(_PENDING_OF, {"b_cp": cp})) if tuple(r[k] for k in ONCE) in wanted]
    return rows


def plan_cards(conn: Connection, checkpoint_id: str, app: str, event: str, recipients: Iterable[Recipient],
               now: float, event_at: float | None = None) -> list[NotificationRow]:
    """A card of `event` for each recipient, once ever."""
    return _plan(conn, [_values(checkpoint_id, app, event, "card", r, now, event_at) for r in recipients])


def plan_updates(conn: Connection, cards: list[NotificationRow], now: float) -> list[NotificationRow]:
    """The updates the sent `cards` need now that their checkpoint closed: each card edited in place
    where the platform can; elsewhere one outcome message per recipient, answering its first card."""
    values: list[dict[str, Any]] = []
    firsts: dict[tuple[str, str], NotificationRow] = {}
    for card in sorted((c for c in cards if c["status"] == SENT and c["kind"] == "card"),
                       key=lambda c: c["sent_at"] or 0):
        target = Recipient(card["channel"], card["address"], card["target_kind"], card["reviewer"])  # type: ignore[arg-type]
        if card["channel"] in EDITS_IN_PLACE:
            values.append(_values(card["checkpoint_id"], card["app"], f"closed:{card['event']}", "update", target, now,
                                  None, card["id"]))
        elif (card["channel"], card["address_key"]) not in firsts:
            firsts[(card["channel"], card["address_key"])] = card
            values.append(_values(card["checkpoint_id"], card["app"], "closed", "update", target, now, None,
                                  card["id"]))
    return _plan(conn, values)


def close(conn: Connection, checkpoint_id: str, now: float) -> list[NotificationRow]:
    """Mark every card of a checkpoint closed; returns them as they are now."""
    rows: list[NotificationRow] = as_rows(conn.execute(
        update(notifications).where(n.checkpoint_id == checkpoint_id, n.kind == "card")
        .values(closed=True, updated_at=now).returning(*notifications.c)))
    return rows


def get(conn: Connection, notification_id: str) -> NotificationRow | None:
    return as_row(conn.execute(_GET, {"b_id": notification_id}).first())


ClaimResult = NotificationRow | Literal["done", "busy"]


def claim(conn: Connection, notification_id: str, now: float, lease_s: float, owner: str) -> ClaimResult:
    """Take a row to send it: the row (now `sending`, leased to `owner`, the job), "busy" while another
    job's lease runs, "done" when there is nothing left to do (sent, skipped, failed, unknown). The
    same job coming back (its attempt was cut short by a store outage) takes its own lease back."""
    row = as_row(conn.execute(_CLAIM, {"b_id": notification_id, "b_now": now, "b_owner": owner, "status": SENDING,
                                       "lease_until": now + lease_s, "lease_owner": owner, "updated_at": now}).first())
    if row is not None:
        return row
    current = get(conn, notification_id)
    return "busy" if current is not None and current["status"] == SENDING else "done"


def mark_sent(conn: Connection, notification_id: str, ref: dict[str, Any] | None, message_key: str | None,
              now: float) -> NotificationRow | None:
    """Sent: keep the platform's reference. Returns the row, whose `closed` says if its checkpoint
    closed meanwhile (then the card needs its update now)."""
    values: dict[str, Any] = dict(b_id=notification_id, status=SENT, lease_until=None, lease_owner=None,
                                  last_error=None, sent_at=now, updated_at=now)
    if ref is not None:
        values.update(ref=ref, message_key=message_key)
    return as_row(conn.execute(_SENT, values).first())


def release(conn: Connection, notification_id: str, error: str, now: float) -> None:
    """The attempt failed and will be retried: back to pending with the reason."""
    conn.execute(_RELEASE, {"b_id": notification_id, "status": PENDING, "lease_until": None, "lease_owner": None,
                            "last_error": error[:1000], "updated_at": now})


def finish(conn: Connection, notification_id: str, status: Literal["skipped", "failed"], now: float,
           error: str | None = None) -> None:
    conn.execute(_FINISH, {"b_id": notification_id, "status": status, "lease_until": None, "lease_owner": None,
                           "last_error": error and error[:1000], "updated_at": now})


def cards_of(conn: Connection, checkpoint_id: str) -> list[NotificationRow]:
    rows: list[NotificationRow] = as_rows(conn.execute(
        select(notifications).where(n.checkpoint_id == checkpoint_id).order_by(n.created_at, n.id)))
    return rows


def by_message(conn: Connection, channel: str, message_key: str) -> NotificationRow | None:
    """The card a click came from (Feishu's form submits name only the message)."""
    return as_row(conn.execute(select(notifications).where(n.channel == channel, n.message_key == message_key,
                                                           n.kind == "card").limit(1)).first())


def keep_update_token(conn: Connection, notification_id: str, token: str, now: float) -> None:
    conn.execute(update(notifications).where(n.id == notification_id).values(update_token=token, updated_at=now))


# ---------------------------------------------------------------------- callbacks and link uses
def take_callback(conn: Connection, channel: str, idem_key: str, now: float, **fields: Any
                  ) -> tuple[CallbackRow, bool]:
    """The callback row of a platform action id: (row, True) the first time, (existing row, False)
    for a retried callback or a double click."""
    stmt = _insert(conn)(notification_callbacks).values(channel=channel, idem_key=idem_key, at=now,
                                                       outcome="accepted", **fields)
    fresh = conn.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "idem_key"])
                         .returning(cb.id)).first() is not None
    row = as_row(conn.execute(select(notification_callbacks)
                              .where(cb.channel == channel, cb.idem_key == idem_key)).first())
    assert row is not None
    return row, fresh


def record_callback(conn: Connection, channel: str, outcome: str, now: float, **fields: Any) -> None:
    """A callback or link use with no action id of its own (refused before it could be read, a replay)."""
    conn.execute(notification_callbacks.insert().values(channel=channel, outcome=outcome, at=now, **fields))


def settle_callback(conn: Connection, callback_id: int, outcome: str, **fields: Any) -> None:
    conn.execute(update(notification_callbacks).where(cb.id == callback_id).values(outcome=outcome, **fields))


def callbacks_of(conn: Connection, checkpoint_id: str | None = None, channel: str | None = None) -> list[CallbackRow]:
    q = select(notification_callbacks).order_by(cb.id)
    if checkpoint_id is not None:
        q = q.where(cb.checkpoint_id == checkpoint_id)
    if channel is not None:
        q = q.where(cb.channel == channel)
    rows: list[CallbackRow] = as_rows(conn.execute(q))
    return rows


def use_nonce(conn: Connection, nonce: str, checkpoint_id: str, reviewer: str, action: str, now: float) -> bool:
    """Spend a decision link's nonce: True the first time, False when the link was used before."""
    stmt = _insert(conn)(notification_link_nonces).values(nonce=nonce, checkpoint_id=checkpoint_id,
                                                          reviewer=reviewer, action=action, used_at=now)
    return conn.execute(stmt.on_conflict_do_nothing(index_elements=["nonce"])
                        .returning(notification_link_nonces.c.nonce)).first() is not None
