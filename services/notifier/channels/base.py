"""One interface for every channel, and the platform-neutral types it speaks.

A `Card` says what a reviewer should see about one checkpoint; each adapter renders it in its
platform's format, within that platform's size limits. `parse_callback` is pure (no I/O): it verifies
a platform's HTTP callback and says what to answer and what was clicked, so the notifier core owns
the HTTP server, the store (idempotency, single use) and the decisions.

Secrets (bot tokens, signing secrets, AES keys, passwords) live only in `Channel.settings`: no error
message, log line, card or link built here contains one, nor a URL that may carry one in its query.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

import httpx
import structlog

log = structlog.get_logger("hitl.notifier.channels")


class ChannelError(Exception):
    """A platform call failed. `permanent`: retrying the same call cannot succeed (bad credentials,
    unknown channel, card refused); otherwise retry, not before `retry_after_s` when it is given."""

    def __init__(self, channel: str, code: str, message: str, *, retry_after_s: float | None = None,
                 permanent: bool = False) -> None:
        super().__init__(f"{channel}: {code}: {message}")
        self.channel = channel
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.permanent = permanent


RefusalCode = Literal["bad_signature", "stale_timestamp", "undecryptable", "malformed", "wrong_app", "no_callbacks"]


class CallbackRefused(Exception):
    """A callback that must not be trusted; answer it with `status` and this message (no secrets)."""

    def __init__(self, code: RefusalCode, message: str, status: int = 401) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ButtonStyle(StrEnum):
    primary = "primary"
    danger = "danger"
    default = "default"


class CardState(StrEnum):
    """What the card shows: open with buttons, or how the checkpoint ended (buttons gone)."""

    open = "open"
    approved = "approved"
    revised = "revised"
    edited = "edited"
    aborted = "aborted"
    expired = "expired"
    cancelled = "cancelled"


class LinkPolicy(StrEnum):
    """Which buttons a channel renders as signed links to the confirmation page."""

    none = "none"  # every button is a platform callback (Slack: modal for text; Feishu: card form)
    text = "text"  # callbacks, but the platform cannot collect text: revise/edit are links (WeCom)
    all = "all"  # the platform has no callbacks: every button is a link (DingTalk robot, email, webhook)


@dataclass(frozen=True)
class Button:
    """`action`: approve | revise | edit | abort | open | a Dify form action id. `value` is an
    opaque token the platform hands back on click; `url` makes it a link button instead."""

    action: str
    label: str
    style: ButtonStyle = ButtonStyle.default
    value: str = ""
    url: str | None = None
    needs_text: bool = False

    @property
    def is_link(self) -> bool:
        return self.url is not None


@dataclass(frozen=True)
class Field:
    label: str
    value: str


@dataclass(frozen=True)
class Card:
    checkpoint_id: str
    title: str
    message: str
    preview: str  # the node output as text; each adapter truncates it to its platform's limit
    fields: tuple[Field, ...] = ()
    buttons: tuple[Button, ...] = ()
    state: CardState = CardState.open
    outcome: str | None = None  # "Approved by alice via slack at 12:03 UTC" once resolved
    detail_url: str | None = None  # the checkpoint in the console, if there is one

    @property
    def resolved(self) -> bool:
        return self.state is not CardState.open


@dataclass(frozen=True)
class Target:
    """Where a card goes: `address` is the platform's id (Slack channel/user id, Feishu open_id /
    chat_id / email, WeCom userid / partyid, an email address, a webhook URL; DingTalk: the robot)."""

    channel: str
    address: str
    kind: Literal["user", "group"] = "user"


@dataclass(frozen=True)
class MessageRef:
    """What the caller stores to update a sent card later (Slack {channel, ts}, Feishu {message_id},
    WeCom {msgid, response_code, ...}, email {message_id}, ...). JSON-serialisable."""

    channel: str
    target: Target
    ref: dict[str, Any]


@dataclass(frozen=True)
class Click:
    """A verified button press (or modal/form submission) by a platform user."""

    channel: str
    user_id: str  # the platform's user id; the caller maps it to a reviewer
    action: str
    value: str | None  # the button's value token; None when the platform only names the button
    idempotency_key: str  # derived from the platform's event / action id: the same delivery, the same key
    text: str | None = None  # feedback (revise) or the new output (edit)
    user_name: str | None = None
    update_token: str | None = None  # Feishu delayed-update token, WeCom response_code
    message: dict[str, Any] = field(default_factory=dict)  # which message was clicked (as in MessageRef.ref)


@dataclass(frozen=True)
class HttpAnswer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> HttpAnswer:
        import json

        return cls(status, json.dumps(data, ensure_ascii=False).encode(), {"content-type": "application/json"})

    @classmethod
    def text(cls, text: str, status: int = 200) -> HttpAnswer:
        return cls(status, text.encode(), {"content-type": "text/plain; charset=utf-8"})


@dataclass(frozen=True)
class CallbackResult:
    """Answer the platform with `answer` at once (Slack wants it within 3 s); then handle `click`;
    then await `follow_up` if any (e.g. Slack views.open, which must use the trigger within 3 s)."""

    answer: HttpAnswer
    click: Click | None = None
    follow_up: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class CallbackRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # any case; looked up case-insensitively
    query: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class Channel(ABC):
    """One platform. Construct with the channel's settings (secrets and ids, keys as listed in
    `required_settings` / `optional_settings`), a shared `httpx.AsyncClient`, and the notifier's
    public base URL (for links)."""

    name: ClassVar[str]
    link_policy: ClassVar[LinkPolicy]
    required_settings: ClassVar[tuple[str, ...]] = ()
    optional_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Mapping[str, Any], http: httpx.AsyncClient | None, public_base_url: str,
                 *, timeout_s: float = 10.0) -> None:
        missing = [k for k in self.required_settings if not settings.get(k)]
        if missing:
            raise ValueError(f"{self.name} channel: missing settings {', '.join(missing)}")
        unknown = set(settings) - set(self.required_settings) - set(self.optional_settings)
        if unknown:
            raise ValueError(f"{self.name} channel: unknown settings {', '.join(sorted(unknown))}")
        self.settings = dict(settings)
        self.http = http
        self.public_base_url = public_base_url.rstrip("/")
        self.timeout = httpx.Timeout(float(settings.get("timeout_s") or timeout_s))

    def __repr__(self) -> str:  # never the settings: they hold secrets
        return f"<{type(self).__name__}>"

    @abstractmethod
    async def send(self, target: Target, card: Card) -> MessageRef: ...

    @abstractmethod
    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        """Show `card` (usually resolved) in place of the sent one; returns the ref to keep."""

    @abstractmethod
    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        """Verify and interpret one callback; raise CallbackRefused when it cannot be trusted."""

    async def notice(self, click: Click, text: str) -> bool:
        """Tell the one person who clicked, privately, why nothing was decided (not a reviewer, not an
        assignee, already decided). False where the platform has no way to (links say it on the page)."""
        return False

    # ------------------------------------------------------------------ helpers for adapters
    async def _request(self, operation: str, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """One HTTP call with the adapter's timeout. Transport failures, 429 and 5xx become a
        ChannelError; the URL never appears in it (WeCom / DingTalk carry tokens in the query)."""
        if self.http is None:
            raise ChannelError(self.name, "no_http_client", f"{operation} needs an HTTP client")
        try:
            response = await self.http.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.TimeoutException:
            log.warning("channel.call_failed", channel=self.name, operation=operation, reason="timeout")
            raise ChannelError(self.name, "timeout", f"{operation} got no answer within "
                                                     f"{self.timeout.read}s") from None
        except httpx.TransportError as exc:
            log.warning("channel.call_failed", channel=self.name, operation=operation, reason=type(exc).__name__)
            raise ChannelError(self.name, "unreachable", f"{operation} could not reach the platform "
                                                         f"({type(exc).__name__})") from None
        if response.status_code == 429:
            retry = retry_after(response.headers)
            log.warning("channel.rate_limited", channel=self.name, operation=operation, retry_after_s=retry)
            raise ChannelError(self.name, "rate_limited", f"{operation} was rate limited", retry_after_s=retry)
        if response.status_code >= 500:
            log.warning("channel.call_failed", channel=self.name, operation=operation, status=response.status_code)
            raise ChannelError(self.name, "platform_error", f"{operation} answered HTTP {response.status_code}",
                               retry_after_s=retry_after(response.headers))
        return response

    def _json(self, operation: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ChannelError(self.name, "bad_answer", f"{operation} answered HTTP {response.status_code} "
                                                        "without a JSON object", permanent=response.is_client_error)
        return data


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (seconds form) or Feishu's `x-ogw-ratelimit-reset`."""
    for name in ("retry-after", "x-ogw-ratelimit-reset"):
        raw = headers.get(name)
        if raw and raw.strip().replace(".", "", 1).isdigit():
            return float(raw)
    return None


def check_fresh(timestamp_s: float, now: float | None, window_s: float) -> None:
    """Refuse a signed request whose timestamp is further than `window_s` from now (replays)."""
    now = time.time() if now is None else now
    if abs(now - timestamp_s) > window_s:
        raise CallbackRefused("stale_timestamp", f"the request timestamp is more than {int(window_s)} s "
                                                 "away from now", 401)


def truncate(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to at most `limit` characters, with a marker saying it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def truncate_bytes(text: str, limit: int, marker: str = "…") -> str:
    """Like `truncate`, counting UTF-8 bytes (WeCom and DingTalk limits are in bytes)."""
    if len(text.encode()) <= limit:
        return text
    room = limit - len(marker.encode())
    return text.encode()[: max(0, room)].decode(errors="ignore") + marker
