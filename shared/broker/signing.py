"""Who sent a message. Every message our processes publish is signed with the internal key they
share through the store (`x-hitl-sig`); a bot signs its decisions with its own secret
(`x-hitl-bot` + `x-hitl-signature`). Holding broker credentials is then not enough to act as a
reviewer, cancel a run's checkpoints or forge the audit trail: an unsigned or wrongly signed
message goes to its DLQ with the reason.

Signatures are HMAC-SHA256 over the body (`v1=<hex>`). There is no timestamp window: a message may
wait in a queue for as long as the decider is down, and a replay of the same message id has one
effect (idempotent consumers)."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

INTERNAL_HEADER = "x-hitl-sig"
BOT_HEADER = "x-hitl-bot"
BOT_SIGNATURE_HEADER = "x-hitl-signature"


def signature(key: bytes, body: bytes) -> str:
    return "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def bot_headers(bot: str, secret: str, body: bytes) -> dict[str, str]:
    """The headers a bot sends with a decision it publishes (what a bot author needs)."""
    return {BOT_HEADER: bot, BOT_SIGNATURE_HEADER: signature(secret.encode(), body)}


def valid(key: bytes, body: bytes, supplied: Any) -> bool:
    return isinstance(supplied, str) and hmac.compare_digest(signature(key, body), supplied)


@dataclass(frozen=True)
class Sender:
    """Who a delivery came from, as verified: one of our processes, or a configured bot."""

    kind: Literal["internal", "bot"]
    name: str


class Unverified(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Verifier:
    """Checks the signature of a delivery against the internal key and the bots' secrets."""

    def __init__(self, internal_key: bytes, bot_secrets: Mapping[str, bytes] | None = None) -> None:
        self.internal_key = internal_key
        self.bot_secrets = dict(bot_secrets or {})

    def sender(self, headers: Mapping[str, Any], body: bytes, *, bots_allowed: bool) -> Sender:
        if INTERNAL_HEADER in headers:
            if valid(self.internal_key, body, headers.get(INTERNAL_HEADER)):
                return Sender("internal", "hitl")
            raise Unverified("bad internal signature")
        bot = headers.get(BOT_HEADER)
        if not bots_allowed:
            raise Unverified("unsigned message (only dify-hitl's own processes may publish here)")
        if not isinstance(bot, str) or not bot:
            raise Unverified(f"unsigned message: a bot names itself in {BOT_HEADER} and signs the body in "
                             f"{BOT_SIGNATURE_HEADER}")
        secret = self.bot_secrets.get(bot)
        if secret is None:
            raise Unverified(f"unknown bot {bot[:64]!r}")
        if not valid(secret, body, headers.get(BOT_SIGNATURE_HEADER)):
            raise Unverified(f"bad signature for bot {bot[:64]!r}")
        return Sender("bot", bot)
