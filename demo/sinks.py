"""`make run`'s notifications: the notifier's email and webhook channels pointed at two local sinks
that print what they receive — a real SMTP server (aiosmtpd) and a webhook receiver that checks the
`X-HITL-Signature` — so a newcomer sees the card and decides by its link.

    sinks = with_notifier(stack)      # before stack.start_all(): the notifier's settings
    ...
    stack.start("notifier")
    print(sinks.banner())
    ...
    sinks.stop()
"""
from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from demo.stack import ProcessStack
from services.notifier.channels.webhook import WebhookSignatureError, verify_webhook_signature

WEBHOOK_SECRET = "demo-webhook-secret-change-me"
LINK_SECRET = "demo-link-secret-change-me-0123456789abcdef"
EMAIL_TO = "reviewers@demo.local"


def _port(preferred: int) -> int:
    """`preferred` when it is free, else any free port (a second `make run`, another service)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


_printing = threading.Lock()


def print_block(text: str) -> None:
    """One notification, in one write: the two sinks' threads never interleave their lines."""
    with _printing:
        sys.stdout.write(text + "\n\n")
        sys.stdout.flush()


class _MailHandler:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        links = [line.strip() for line in text.splitlines() if "/decide/" in line]
        outcome = [line for line in text.splitlines() if line.startswith(("Approved", "Aborted", "Edited", "Sent back",
                                                                           "Timed out", "Cancelled"))]
        self.say("\n".join([f"[email → {', '.join(envelope.rcpt_tos)}] {msg['Subject']}",
                            *(f"    {x}" for x in links + outcome)]))
        return "250 Message accepted for delivery"


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server calls it by this name
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            verify_webhook_signature(WEBHOOK_SECRET, self.headers.get("x-hitl-signature"), raw)
        except WebhookSignatureError as exc:
            self.send_response(401)
            self.end_headers()
            self.server.say(f"[webhook] refused: {exc.code}")  # type: ignore[attr-defined]
            return
        self.send_response(204)
        self.end_headers()
        event = json.loads(raw)
        cp = event["checkpoint"]
        lines = [f"[webhook] {event['type']}: {cp['title']} ({cp['id']})"]
        lines += [f"    {a['label']}: {a['url']}" for a in event.get("actions") or []]
        if cp.get("outcome"):
            lines.append(f"    {cp['outcome']}")
        self.server.say("\n".join(lines))  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:  # the lines above say it better than the access log
        pass


class LocalSinks:
    """`say` gets each notification as text: printed by default; a test collects them instead (pytest's
    capfd loses what a thread writes while the test reads it)."""

    def __init__(self, smtp_port: int = 8025, webhook_port: int = 8084,
                 say: Callable[[str], None] = print_block) -> None:
        self.say = say
        self.smtp_port, self.webhook_port = _port(smtp_port), _port(webhook_port)
        self._smtp: Any = None
        self._hook: ThreadingHTTPServer | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/hook"

    def start(self) -> LocalSinks:
        from aiosmtpd.controller import Controller

        self._smtp = Controller(_MailHandler(self.say), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        self._hook = ThreadingHTTPServer(("127.0.0.1", self.webhook_port), _HookHandler)
        self._hook.say = self.say  # type: ignore[attr-defined]  # the handler reads it as self.server.say
        threading.Thread(target=self._hook.serve_forever, name="demo-webhook-sink", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._hook is not None:
            self._hook.shutdown()

    def settings(self, console_url: str) -> dict[str, str]:
        """The notifier's settings: email and webhook to these sinks; the links decide as alice."""
        channels = {"email": {"host": "127.0.0.1", "port": self.smtp_port, "from_address": "hitl@demo.local",
                              "security": "none", "subject_prefix": "[Review]"},
                    "webhook": {"secret": WEBHOOK_SECRET}}
        rules = [{"targets": [{"channel": "email", "to": EMAIL_TO, "reviewer": "alice"},  # every demo app
                              {"channel": "webhook", "to": self.webhook_url, "reviewer": "alice"}]}]
        return {"HITL_CHANNELS": json.dumps(channels), "HITL_NOTIFY": json.dumps(rules),
                "HITL_NOTIFIER_LINK_SECRET": LINK_SECRET, "HITL_NOTIFIER_CONSOLE_URL": console_url}

    def banner(self, stack: ProcessStack) -> str:
        return (f"  notifier         {stack.notifier_url}     decision links; notifications print below\n"
                f"                   (email to {EMAIL_TO} via SMTP 127.0.0.1:{self.smtp_port}, "
                f"webhook {self.webhook_url})")


def with_notifier(stack: ProcessStack, sinks: LocalSinks | None = None) -> LocalSinks:
    """Start the sinks and give the stack's processes the notifier's settings (call before starting them)."""
    sinks = (sinks or LocalSinks()).start()
    stack.env.update(sinks.settings(stack.console_url))
    return sinks
