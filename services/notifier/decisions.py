"""Clicks and decision links → decisions by the mapped reviewer, through the same decision plane.

A verified click (a platform callback) is a decision by the reviewer whose identity on that platform
is the clicking user (HITL_REVIEWERS); a link POST, by the reviewer the link is bound to. Either way
a `DecisionSubmitted` goes to `hitl.decisions` with `actor` = that reviewer, `channel` = the platform,
and an `idempotency_key` from the platform's action id (or the link's nonce): the decider applies
the first valid decision, checks scope and assignees, keeps the history, and says why it refused.

Every callback and link use is recorded (`notification_callbacks`): decided, refused (and why),
replayed. A retried callback or a double click finds its row and decides nothing new; a link's nonce
is spent on its first POST. The person who clicked is told privately why nothing was decided
(`Channel.notice`); a link says it on its page.
"""
from __future__ import annotations

import json
import time
from typing import Any

from services.notifier import metrics
from services.notifier.channels.base import CallbackRefused, Channel, ChannelError, Click, HttpAnswer
from services.notifier.channels.cards import outcome_line, unpack_value
from services.notifier.delivery import message_key
from services.notifier.links import DecideOutcome, LinkClaim, LinkError
from shared.access import reviewer_apps
from shared.broker import BrokerError
from shared.broker.replies import ReplyRouter
from shared.broker.router import in_store
from shared.logs import get_logger
from shared.models import Action, DecisionSubmitted, Reply
from shared.refusals import Refusal
from shared.settings import Settings
from shared.store import Database
from shared.store import checkpoints as cp_store
from shared.store import notifications as store
from shared.views import public_view

log = get_logger(__name__)
PLATFORM = {"slack": "Slack", "feishu": "Feishu", "wecom": "WeCom", "dingtalk": "DingTalk"}
PREVIEW_ON_PAGE = 5000


def edited_output(node_output: Any, text: str) -> Any:
    """The new output typed in a chat box or on the link page: text stays text where the output was
    text; where it was JSON, the text is read as JSON when it is valid JSON (else kept as text)."""
    if isinstance(node_output, str) or node_output is None:
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def build_decision(cp: dict[str, Any], action: str, form_action: str | None, text: str | None, *, actor: str,
                   channel: str, key: str) -> DecisionSubmitted:
    fields: dict[str, Any] = {}
    act = Action(action)
    if act is Action.revise:
        fields["feedback"] = text or ""
    elif act is Action.edit:
        fields.update(output=edited_output(cp.get("node_output"), text or ""), has_output=True)
    elif act is Action.abort:
        fields["reason"] = f"aborted by {actor} via {channel}"
    return DecisionSubmitted(checkpoint_id=cp["id"], action=act, actor=actor, channel=channel,
                             idempotency_key=key[:200], form_action=form_action, **fields)


def verdict(reply: Reply | None) -> tuple[str, str | None, str]:
    """(applied | rejected | queued, refusal code, what to tell the person)."""
    if reply is None:
        return "queued", None, "Your decision is queued; it will be applied shortly."
    if reply.outcome == "applied":
        return "applied", None, "Decision recorded."
    if reply.error_code == Refusal.already_resolved and reply.winning:
        w = reply.winning
        cp = {"status": "resolved", "action": w.get("action"), "decided_by": w.get("decided_by"),
              "decision_channel": w.get("channel"), "resolved_at": w.get("resolved_at")}
        if w.get("reason") == "timeout":
            cp["status"] = "expired"
        return "rejected", reply.error_code, f"Already decided: {outcome_line(cp)[1]}."
    return "rejected", reply.error_code, reply.error_message or "The decision was refused."


class Decisions:
    def __init__(self, settings: Settings, db: Database, broker: Any, replies: ReplyRouter) -> None:
        self.settings, self.db, self.broker, self.replies = settings, db, broker, replies

    # ------------------------------------------------------------------ platform callbacks
    def unknown_user_text(self, channel: str, user_id: str) -> str:
        return (f"Nothing was decided: your {PLATFORM.get(channel, channel)} account ({user_id or 'unknown'}) is "
                f"not linked to a dify-hitl reviewer. An admin can add \"{channel}\": \"{user_id}\" to your entry "
                "in HITL_REVIEWERS.")

    def early_answer(self, adapter: Channel, click: Click, answer: HttpAnswer) -> tuple[HttpAnswer, bool]:
        """The answer to send at once, and whether it already told the person everything: Feishu's
        toast can say at once that an unknown user decided nothing."""
        if adapter.name == "feishu" and self.settings.reviewer_on(adapter.name, click.user_id) is None:
            text = self.unknown_user_text(adapter.name, click.user_id)
            return HttpAnswer.json({"toast": {"type": "error", "content": text}}), True
        return answer, False

    async def refused(self, channel: str, exc: CallbackRefused) -> None:
        metrics.callbacks.labels(channel, "refused").inc()
        metrics.refusals.labels(channel, exc.code).inc()
        log.warning("callback.refused", channel=channel, code=exc.code)
        await in_store(self.broker, self._record, channel, "refused", {"code": exc.code, "message": exc.message})

    async def on_click(self, adapter: Channel, click: Click, received_at: float, told: bool = False) -> str:
        """Decide what a verified click asks for; returns the outcome recorded."""
        channel = adapter.name
        reviewer = self.settings.reviewer_on(channel, click.user_id)
        found = await in_store(self.broker, self._locate, channel, click)
        cp, card_id, action, form_action = found if found else (None, None, click.action, None)
        row, fresh = await in_store(self.broker, self._take, channel, click.idempotency_key, {
            "platform_user": click.user_id[:255], "reviewer": reviewer.name if reviewer else None,
            "checkpoint_id": cp["id"] if cp else None, "action": action})
        # A retried callback or a double click: its first delivery was decided, or is being decided now.
        # Only a first attempt that died before the decider answered (accepted, and long ago) is taken
        # up again — with the same idempotency key, so the decider still decides once.
        recent = time.time() - row["at"] < self.settings.decision_reply_timeout_s + 5
        in_flight = row["outcome"] == "accepted" and recent
        if not fresh and (row["outcome"] != "accepted" or in_flight):
            metrics.callbacks.labels(channel, "replayed").inc()
            metrics.refusals.labels(channel, "replayed").inc()
            await in_store(self.broker, self._record, channel, "replayed", {
                "code": "replayed", "platform_user": click.user_id[:255], "checkpoint_id": cp["id"] if cp else None,
                "message": f"the same callback as #{row['id']} ({row['outcome']})"})
            log.info("callback.replayed", channel=channel, first=row["id"])
            return "replayed"
        if reviewer is None:
            return await self._refuse(adapter, click, row["id"], "unknown_user",
                                      self.unknown_user_text(channel, click.user_id), told)
        if cp is None:
            return await self._refuse(adapter, click, row["id"], "unknown_checkpoint",
                                      "Nothing was decided: this card's checkpoint is not known here.", told)
        decision = build_decision(cp, action, form_action, click.text, actor=reviewer.name, channel=channel,
                                  key=click.idempotency_key)
        outcome, code, text = await self._submit(decision, channel, received_at)
        await in_store(self.broker, self._settle, row["id"], "decided" if outcome != "rejected" else "rejected",
                       code, None if outcome == "applied" else text)
        if outcome == "applied" and click.update_token and card_id:
            await in_store(self.broker, self._keep_token, card_id, click.update_token)
        metrics.callbacks.labels(channel, "decided").inc()
        log.info("callback.decided", channel=channel, checkpoint_id=cp["id"], action=action, reviewer=reviewer.name,
                 outcome=outcome, code=code)
        if outcome == "rejected":
            await self._notice(adapter, click, f"Nothing was decided: {text}")
        return outcome

    async def _refuse(self, adapter: Channel, click: Click, callback_id: int, code: str, text: str,
                      told: bool) -> str:
        metrics.callbacks.labels(adapter.name, "refused").inc()
        metrics.refusals.labels(adapter.name, code).inc()
        log.warning("callback.refused", channel=adapter.name, code=code)
        await in_store(self.broker, self._settle, callback_id, "refused", code, text)
        if not told:
            await self._notice(adapter, click, text)
        return "refused"

    async def _notice(self, adapter: Channel, click: Click, text: str) -> None:
        try:
            await adapter.notice(click, text)
        except ChannelError as exc:  # telling them is a courtesy: the refusal is recorded either way
            log.warning("callback.notice_failed", channel=adapter.name, code=exc.code)

    async def _submit(self, decision: DecisionSubmitted, channel: str,
                      received_at: float) -> tuple[str, str | None, str]:
        try:
            reply = await self.replies.submit_decision(decision, self.settings.decision_reply_timeout_s)
        except BrokerError:
            reply = None  # not confirmed: the platform's retry (same key) or the person's next click decides
            log.warning("callback.not_queued", channel=channel, checkpoint_id=decision.checkpoint_id)
        outcome, code, text = verdict(reply)
        metrics.decisions.labels(channel, outcome).inc()
        metrics.callback_to_decision.labels(channel).observe(max(0.0, time.time() - received_at))
        return outcome, code, text

    # ------------------------------------------------------------------ decision links
    async def on_link(self, claim: LinkClaim, text: str | None) -> DecideOutcome:
        received_at = time.time()
        channel = claim.channel or "link"
        key = f"link:{claim.nonce}"
        fields = {"reviewer": claim.reviewer, "checkpoint_id": claim.checkpoint_id, "action": claim.action}
        if not await in_store(self.broker, self._use_nonce, claim):
            metrics.callbacks.labels(channel, "refused").inc()
            metrics.refusals.labels(channel, "link_used").inc()
            await in_store(self.broker, self._record, channel, "refused",
                           {**fields, "code": "link_used", "message": "the link was used before"})
            log.warning("link.refused", channel=channel, code="link_used", checkpoint_id=claim.checkpoint_id)
            return DecideOutcome("used")
        row, _ = await in_store(self.broker, self._take, channel, key, fields)
        reviewer = self.settings.reviewer(claim.reviewer)
        cp = await in_store(self.broker, self._checkpoint, claim.checkpoint_id,
                            reviewer_apps(self.settings, reviewer) if reviewer else frozenset())
        if reviewer is None or cp is None:
            why = "unknown_user" if reviewer is None else "unknown_checkpoint"
            metrics.callbacks.labels(channel, "refused").inc()
            metrics.refusals.labels(channel, why).inc()
            await in_store(self.broker, self._settle, row["id"], "refused", why, None)
            return DecideOutcome("refused", "This link's reviewer or checkpoint is not known here.")
        decision = build_decision(cp, claim.action, claim.form_action, text, actor=reviewer.name, channel=channel,
                                  key=key)
        outcome, code, message = await self._submit(decision, channel, received_at)
        await in_store(self.broker, self._settle, row["id"], "decided" if outcome != "rejected" else "rejected",
                       code, None if outcome == "applied" else message)
        metrics.callbacks.labels(channel, "decided").inc()
        log.info("link.decided", channel=channel, checkpoint_id=cp["id"], action=claim.action, reviewer=reviewer.name,
                 outcome=outcome, code=code)
        if outcome == "rejected":
            if code == Refusal.already_resolved:
                return DecideOutcome("closed", message.removeprefix("Already decided: ").rstrip("."))
            return DecideOutcome("refused", message)
        return DecideOutcome("decided", message)

    async def link_refused(self, exc: LinkError) -> None:
        metrics.callbacks.labels("link", "refused").inc()
        metrics.refusals.labels("link", f"link_{exc.code}").inc()
        log.warning("link.refused", code=exc.code)
        await in_store(self.broker, self._record, "link", "refused", {"code": f"link_{exc.code}",
                                                                      "message": exc.message})

    async def describe(self, claim: LinkClaim) -> dict[str, str] | None:
        """What the confirmation page shows: the checkpoint's message and output, or how it ended."""
        reviewer = self.settings.reviewer(claim.reviewer)
        if reviewer is None:
            return None
        cp = await in_store(self.broker, self._checkpoint, claim.checkpoint_id, reviewer_apps(self.settings, reviewer))
        if cp is None:
            return None
        if cp["status"] != "open":
            return {"Already closed": outcome_line(cp)[1]}
        output = cp.get("node_output")
        shown = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, indent=2, default=str)
        return {"Message": str(cp.get("message") or (cp.get("form") or {}).get("form_content") or ""),
                "Output": (shown or "")[:PREVIEW_ON_PAGE]}

    # ------------------------------------------------------------------ store work (executor)
    def _locate(self, channel: str, click: Click) -> tuple[dict[str, Any], str | None, str, str | None] | None:
        """(checkpoint, card row id, action, form action) of a click: from the button's value, or —
        Feishu's form submits carry none — from the card the click came from."""
        with self.db.read() as conn:
            key = message_key(channel, click.message) if click.message else None
            card = store.by_message(conn, channel, key) if key else None
            if click.value:
                try:
                    cid, action, form_action = unpack_value(click.value)
                except ValueError:
                    return None
            elif card is not None:
                cid, action, form_action = card["checkpoint_id"], click.action, None
            else:
                return None
            row = cp_store.get(conn, cid)
        if row is None or action not in Action.__members__:
            return None
        return public_view(row), (card["id"] if card and card["checkpoint_id"] == cid else None), action, form_action

    def _checkpoint(self, checkpoint_id: str, apps: frozenset[str] | None) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = cp_store.get(conn, checkpoint_id, apps=apps)
        return public_view(row) if row is not None else None

    def _take(self, channel: str, key: str, fields: dict[str, Any]) -> tuple[store.CallbackRow, bool]:
        with self.db.write() as conn:
            return store.take_callback(conn, channel, key[:200], self.db.now(), **fields)

    def _record(self, channel: str, outcome: str, fields: dict[str, Any]) -> None:
        with self.db.write() as conn:
            store.record_callback(conn, channel, outcome, self.db.now(), **fields)

    def _settle(self, callback_id: int, outcome: str, code: str | None, message: str | None) -> None:
        with self.db.write() as conn:
            store.settle_callback(conn, callback_id, outcome, code=code, message=message and message[:1000])

    def _keep_token(self, card_id: str, token: str) -> None:
        with self.db.write() as conn:
            store.keep_update_token(conn, card_id, token[:255], self.db.now())

    def _use_nonce(self, claim: LinkClaim) -> bool:
        with self.db.write() as conn:
            return store.use_nonce(conn, claim.nonce[:64], claim.checkpoint_id, claim.reviewer, claim.action,
                                   self.db.now())
