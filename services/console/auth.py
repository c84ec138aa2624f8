"""Sign-in: a session row per sign-in in the store, a cookie holding its random token, a CSRF token
per session, and a sign-in throttle keyed by client address and name.

The cookie holds only a random token; the store keeps its SHA-256 (shared/store/sessions.py). Every
request looks the row up, so a sign-out — or a reviewer's removal or credential change, found when
their cookie is next used — ends the session on every console replica that shares the store.
HttpOnly, SameSite=Lax. Sign-in by password (or reviewer token) or by OpenID Connect (oidc.py).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.console.config import ConsoleSettings
from shared.logs import get_logger
from shared.passwords import hash_password, verify_password
from shared.settings import ReviewerConfig, Settings
from shared.store import Database
from shared.store import sessions as session_store
from shared.store.errors import StoreUnavailable

log = get_logger(__name__)
COOKIE = "hitl_console"
LOGIN_COOKIE = "hitl_console_login"  # the sign-in form's CSRF nonce (there is no session yet)
PUBLIC = ("/login", "/static/", "/healthz", "/readyz", "/metrics", "/favicon.ico")
_DUMMY_HASH = hash_password("not a password", iterations=200_000, salt="0" * 32)


@dataclass(frozen=True)
class Session:
    reviewer: ReviewerConfig  # as the console sees them: configured, or built from the provider's claims
    csrf: str
    expires: float
    token: str
    method: str = "password"  # password | oidc
    configured: bool = True  # HITL_REVIEWERS lists this name (the decider knows them)
    id_token: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.reviewer.name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def client_address(request: Request, trusted_hops: int) -> str:
    """The client as the last trusted proxy saw it (X-Forwarded-For), else the socket's peer."""
    peer = request.client.host if request.client else "unknown"
    if trusted_hops <= 0:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    return hops[-trusted_hops] if len(hops) >= trusted_hops else (hops[0] if hops else peer)


class LoginThrottle:
    """Failed sign-ins per (client address, name) in a sliding minute. A pair at the limit waits until
    its oldest failure is a minute old — even with the right password, so that guessing gains
    nothing from a pause. Memory is bounded: past `max_keys` pairs the longest-quiet pair that is
    not waiting is forgotten (never everyone at once, and flooding other names does not free a
    pair that is waiting its cool-down)."""

    def __init__(self, limit: int, max_keys: int, window_s: float = 60.0) -> None:
        self.limit, self.max_keys, self.window_s = limit, max_keys, window_s
        self.failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @staticmethod
    def key(address: str, name: str) -> tuple[str, str]:
        return address, name.strip().lower()[:128]

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        recent = self.failures.get(key)
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if recent is not None and not recent:
            del self.failures[key]
            return None
        return recent

    def blocked(self, key: tuple[str, str], now: float | None = None) -> float:
        """Seconds this pair still waits (0: it may try)."""
        now = time.monotonic() if now is None else now
        recent = self._recent(key, now)
        if not recent or len(recent) < self.limit:
            return 0.0
        return max(0.0, recent[-self.limit] + self.window_s - now)

    def failed(self, key: tuple[str, str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        recent = self._recent(key, now) or deque(maxlen=self.limit)
        recent.append(now)
        self.failures[key] = recent
        self.failures.move_to_end(key)
        while len(self.failures) > self.max_keys:
            self._evict_one(now)

    def _evict_one(self, now: float, scan: int = 64) -> None:
        """Forget the oldest pair that is not waiting (among the `scan` oldest); if all of those wait, the
        oldest of them."""
        for i, (key, recent) in enumerate(self.failures.items()):
            if i >= scan:
                break
            if len(recent) < self.limit or recent[-self.limit] + self.window_s <= now:
                del self.failures[key]
                return
        self.failures.popitem(last=False)


class Sessions:
    def __init__(self, settings: Settings, console: ConsoleSettings, db: Database) -> None:
        self.settings = settings
        self.console = console
        self.db = db
        self.key = (console.secret or "").encode()
        self.throttle = LoginThrottle(console.login_attempts, console.login_throttle_keys)

    # ------------------------------------------------------------------ signed values (sign-in form, OIDC state)
    def sign(self, purpose: str, payload: dict, ttl_s: float) -> str:
        body = _b64(json.dumps({**payload, "e": time.time() + ttl_s}, separators=(",", ":")).encode())
        mac = hmac.new(self.key, f"{purpose}|{body}".encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def unsign(self, purpose: str, value: str | None) -> dict | None:
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        expected = _b64(hmac.new(self.key, f"{purpose}|{body}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or float(data.get("e", 0)) < time.time():
            return None
        return data

    @staticmethod
    def fingerprint(reviewer: ReviewerConfig | None, method: str = "password") -> str:
        """What a session depends on: for a password sign-in the reviewer's token and password hash
        (a change ends it); for OIDC whether HITL_REVIEWERS lists the name (a removal ends it)."""
        if method == "oidc":
            return "oidc:configured" if reviewer is not None else "oidc:provider"
        assert reviewer is not None
        return hashlib.sha256(f"{reviewer.token}\0{reviewer.password_hash or ''}".encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ session rows (call off the event loop)
    def issue(self, reviewer: ReviewerConfig, *, method: str = "password", address: str | None = None,
              id_token: str | None = None) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        configured = self.settings.reviewer(reviewer.name)
        with self.db.write() as conn:
            session_store.create(conn, token, reviewer=reviewer.name, method=method, groups=list(reviewer.groups),
                                 fingerprint=self.fingerprint(configured if method == "oidc" else reviewer, method),
                                 csrf=secrets.token_urlsafe(24), address=address, now=now,
                                 expires_at=now + self.console.session_hours * 3600, id_token=id_token)
        return token

    def lookup(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        now = time.time()
        with self.db.read() as conn:
            row = session_store.live(conn, token, now)
        if row is None:
            return None
        configured = self.settings.reviewer(row["reviewer"])
        why = self._ended_by_configuration(row, configured)
        if why:
            with self.db.write() as conn:
                session_store.revoke(conn, token, why, now)
            log.info("console.session_revoked", reviewer=row["reviewer"], reason=why)
            return None
        if row["method"] == "oidc":
            reviewer = oidc_reviewer(row["reviewer"], list(row["groups"] or []), configured)
        else:
            assert configured is not None
            reviewer = configured
        return Session(reviewer, row["csrf"], row["expires_at"], token, row["method"], configured is not None,
                       row["id_token"])

    def _ended_by_configuration(self, row: session_store.SessionRow, configured: ReviewerConfig | None) -> str:
        if row["method"] == "oidc":
            if row["fingerprint"] == "oidc:configured" and configured is None:
                return "removed"
            if configured is None and self.console.oidc_only_reviewers:
                return "removed"
            return ""
        if configured is None:
            return "removed"
        if not hmac.compare_digest(row["fingerprint"], self.fingerprint(configured, "password")):
            return "credentials_changed"
        return ""

    def revoke(self, token: str, reason: str = "sign_out") -> session_store.SessionRow | None:
        with self.db.write() as conn:
            return session_store.revoke(conn, token, reason, time.time())

    def sweep(self) -> int:
        """At start: revoke sessions that the configuration no longer allows, and forget ended ones."""
        now, revoked = time.time(), 0
        with self.db.write() as conn:
            for live in session_store.live_reviewers(conn, now):
                configured = self.settings.reviewer(live["reviewer"])
                if live["method"] == "oidc":
                    if live["fingerprint"] == "oidc:configured" and configured is None:
                        revoked += session_store.revoke_reviewer(conn, live["reviewer"], "removed", now,
                                                                 method="oidc", keep_fingerprint="oidc:provider")
                    continue
                if configured is None:
                    revoked += session_store.revoke_reviewer(conn, live["reviewer"], "removed", now,
                                                             method="password")
                elif live["fingerprint"] != self.fingerprint(configured, "password"):
                    revoked += session_store.revoke_reviewer(
                        conn, live["reviewer"], "credentials_changed", now, method="password",
                        keep_fingerprint=self.fingerprint(configured, "password"))
            session_store.prune(conn, now - 7 * 86400)
        return revoked

    # ------------------------------------------------------------------ cookies
    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=self.console.secure_cookie, path="/")

    def start(self, response: Response, token: str) -> None:
        self.set_cookie(response, COOKIE, token, int(self.console.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/")

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")

    # ------------------------------------------------------------------ sign-in form
    def login_nonce(self) -> tuple[str, str]:
        """(cookie value, form value): a double-submit token against login CSRF."""
        nonce = secrets.token_urlsafe(18)
        return self.sign("login", {"c": nonce}, 3600), nonce

    def login_nonce_ok(self, request: Request, supplied: str | None) -> bool:
        data = self.unsign("login", request.cookies.get(LOGIN_COOKIE))
        return bool(data and supplied and hmac.compare_digest(str(data["c"]), supplied))

    def check_password(self, name: str, password: str) -> ReviewerConfig | None:
        """The reviewer when the password is theirs (their password hash, or their API token); slow on
        purpose (PBKDF2), and as slow for an unknown name. Call it off the event loop."""
        reviewer = self.settings.reviewer(name)
        if reviewer is None or not password:
            verify_password(password or "x", _DUMMY_HASH)
            return None
        by_hash = verify_password(password, reviewer.password_hash or _DUMMY_HASH) and bool(reviewer.password_hash)
        by_token = hmac.compare_digest(password.encode(), reviewer.token.encode())
        return reviewer if by_hash or by_token else None


def oidc_reviewer(name: str, groups: list[str], configured: ReviewerConfig | None) -> ReviewerConfig:
    """The reviewer an identity-provider sign-in is: a configured reviewer keeps their grants and role and
    gains the provider's groups; anyone else is their groups' grants alone."""
    if configured is not None:
        merged = list(dict.fromkeys([*configured.groups, *groups]))
        return configured.model_copy(update={"groups": merged})
    return ReviewerConfig(name=name, token=secrets.token_urlsafe(16), groups=groups)


def csrf_ok(session: Session | None, supplied: str | None) -> bool:
    if session is None or not supplied:
        return False
    return hmac.compare_digest(session.csrf.encode(), str(supplied).encode())


def wants_json(request: Request) -> bool:
    path = request.url.path
    return (path.startswith(("/events", "/api/")) or "application/json" in request.headers.get("accept", "")
            or request.headers.get("content-type", "").startswith("application/json"))


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


STORE_DOWN = {"error": {"code": "store_unavailable", "message": "The store does not answer; try again shortly."}}


class AuthMiddleware:
    """Every path except sign-in, static files and the ops endpoints needs a live session: pages
    redirect to /login, the API and the event stream answer 401 JSON. The session lands in
    request.state. A store that does not answer is a 503, not a sign-out."""

    def __init__(self, app, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        path = request.url.path
        public = path.startswith(PUBLIC)
        token = request.cookies.get(COOKIE)
        session: Session | None = None
        if token and not path.startswith(("/static/", "/healthz", "/readyz", "/metrics")):
            try:
                session = await asyncio.to_thread(self.sessions.lookup, token)
            except StoreUnavailable:
                if not public:
                    return await JSONResponse(STORE_DOWN, status_code=503,
                                              headers={"Retry-After": "5"})(scope, receive, send)
        scope.setdefault("state", {})["session"] = session
        if session is None and not public:
            if wants_json(request) or request.method != "GET":
                response: Response = JSONResponse(
                    {"error": {"code": "unauthorized", "message": "sign in first"}}, status_code=401)
            else:
                query = f"?{request.url.query}" if request.url.query else ""
                response = RedirectResponse(f"/login?next={quote(path + query, safe='')}", status_code=303)
            if token:
                Sessions.end(response)  # an ended session: drop its cookie too
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
