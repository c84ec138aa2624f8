"""The notifier's metrics: messages sent / failed / retried per channel, how long after the event a
card reached its platform, callbacks and the decisions they made per channel. Labels are channel,
kind, reason, outcome and code — small fixed sets; never a checkpoint, user or address."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

sent = Counter("hitl_notifications_sent_total", "Platform messages sent, by channel and kind (card | update)",
               ["channel", "kind"])
failed = Counter("hitl_notifications_failed_total", "Platform messages given up (to the DLQ), by channel and "
                 "reason (permanent | gave_up)", ["channel", "reason"])
retried = Counter("hitl_notifications_retried_total", "Platform calls that failed and will be retried, by channel "
                  "and reason (rate_limited | timeout | unreachable | platform_error | other)", ["channel", "reason"])
skipped = Counter("hitl_notifications_skipped_total", "Cards not sent because their checkpoint closed first",
                  ["channel"])
latency = Histogram("hitl_notification_latency_seconds", "From the event (checkpoint.opened, a reminder) to the "
                    "card accepted by the platform", ["channel"], buckets=NOTIFY_BUCKETS)
callbacks = Counter("hitl_notifier_callbacks_total", "Platform callbacks and decision-link uses, by outcome "
                    "(decided | refused | replayed | ignored)", ["channel", "outcome"])
refusals = Counter("hitl_notifier_callback_refusals_total", "Callbacks and link uses refused, by code",
                   ["channel", "code"])
decisions = Counter("hitl_notifier_decisions_total", "Decisions made from a channel, by the decider's verdict "
                    "(applied | rejected | queued)", ["channel", "outcome"])
callback_to_decision = Histogram("hitl_notifier_callback_decision_seconds", "From a platform callback or link POST "
                                 "to the decider's verdict", ["channel"], buckets=NOTIFY_BUCKETS)
paused = Gauge("hitl_notifier_channel_paused", "1 while a channel is paused (Retry-After, repeated failures)",
               ["channel"])

RETRY_REASONS = {"rate_limited": "rate_limited", "timeout": "timeout", "unreachable": "unreachable",
                 "platform_error": "platform_error"}


def retry_reason(code: str) -> str:
    """A ChannelError code as a bounded label value."""
    if code.startswith("smtp_4"):
        return "platform_error"
    return RETRY_REASONS.get(code, "other")
