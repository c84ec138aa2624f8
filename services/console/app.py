"""The console's Starlette app: templates, static files, security headers, routes, the event hub."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.console import bulk, delegation, oidc, pages, review, signin
from services.console.auth import AuthMiddleware, Sessions
from services.console.config import ConsoleSettings
from services.console.live import EventHub
from services.console.oidc import OidcClient
from services.console.web import templates
from shared.broker.replies import ReplyRouter
from shared.broker.signing import Verifier
from shared.health import ops_routes
from shared.settings import Settings
from shared.store import Database
from shared.store.errors import StoreUnavailable

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'{extra}; frame-ancestors 'none'")


def security_headers(console: ConsoleSettings) -> list[tuple[bytes, bytes]]:
    """The headers of every answer. Sign-out posts a form whose answer redirects to the identity provider
    (RP-initiated logout), and browsers hold a form's redirects to form-action: the issuer's origin is
    allowed there, nothing else."""
    extra = ""
    if console.oidc_enabled and console.oidc_issuer:
        issuer = urlparse(console.oidc_issuer)
        extra = f" {issuer.scheme}://{issuer.netloc}"
    return [(b"content-security-policy", CSP.format(extra=extra).encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """CSP without inline script or style (the templates carry data in data-* attributes), and no caching
    of pages that show checkpoints."""

    def __init__(self, app, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.headers
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, console: ConsoleSettings, db: Database, broker: Any, *,
               start_broker: bool = True, verifier: Verifier | None = None) -> Starlette:
    replies = ReplyRouter(broker, settings.names, instance=str(console.port), role="console", verifier=verifier)
    hub = EventHub(broker, settings.names, keepalive_s=console.sse_keepalive_s, verifier=verifier)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        if start_broker:
            await broker.start(wait_s=None)  # keeps retrying; /readyz says when it is up
        yield
        hub.close()
        replies.fail_all()
        if start_broker:
            await broker.close()

    routes = [
        Route("/login", signin.login_form, methods=["GET"], name="login_form"),
        Route("/login", signin.login, methods=["POST"]),
        Route("/login/oidc", oidc.start, methods=["GET"], name="oidc_start"),
        Route("/login/oidc/callback", oidc.callback, methods=["GET"], name="oidc_callback"),
        Route("/logout", signin.logout, methods=["POST"]),
        Route("/", pages.inbox, methods=["GET"]),
        Route("/checkpoints/{checkpoint_id}", review.checkpoint_page, methods=["GET"]),
        Route("/checkpoints/{checkpoint_id}/decision", review.decide, methods=["POST"]),
        Route("/checkpoints/{checkpoint_id}/{command}", delegation.command, methods=["POST"]),  # claim|release|reassign
        Route("/bulk-decision", bulk.bulk_decision, methods=["POST"]),
        Route("/runs", pages.runs, methods=["GET"]),
        Route("/runs/{run_id}", pages.run, methods=["GET"]),
        Route("/events", pages.events, methods=["GET"]),
        Route("/api/session", signin.session_info, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *ops_routes(lambda: {"broker": broker.ready, "store": db.ready()}),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: pages.not_found, StoreUnavailable: pages.store_unavailable})
    app.state.settings = settings
    app.state.console = console
    app.state.db = db
    app.state.broker = broker
    app.state.replies = replies
    app.state.hub = hub
    app.state.sessions = Sessions(settings, console, db)
    app.state.oidc = OidcClient(console) if console.oidc_enabled else None
    app.state.templates = templates()
    app.add_middleware(AuthMiddleware, sessions=app.state.sessions)
    app.add_middleware(SecurityHeaders, headers=security_headers(console))
    return app
