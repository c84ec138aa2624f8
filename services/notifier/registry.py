"""The configured channels (HITL_CHANNELS): one adapter per platform, checked at start."""
from __future__ import annotations

import httpx

from services.notifier.channels.base import Channel
from services.notifier.channels.dingtalk import DingTalkChannel
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.feishu import FeishuChannel
from services.notifier.channels.slack import SlackChannel
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.channels.wecom import WeComChannel
from shared.settings import Settings, SettingsError

CHANNEL_TYPES: dict[str, type[Channel]] = {c.name: c for c in (
    SlackChannel, FeishuChannel, DingTalkChannel, WeComChannel, EmailChannel, WebhookChannel)}


def build_channels(settings: Settings, http: httpx.AsyncClient | None) -> dict[str, Channel]:
    """An adapter for each configured channel; a missing or unknown key stops the process with the
    channel and the key named (never a value: they are secrets)."""
    out: dict[str, Channel] = {}
    for name, conf in settings.channels.items():
        try:
            out[name] = CHANNEL_TYPES[name](conf, http, settings.notifier_url, timeout_s=settings.notifier_timeout_s)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"invalid configuration:\n  HITL_CHANNELS ({name}): {exc}") from None
    return out
