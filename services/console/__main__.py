"""python -m services.console — the review web console (HITL_CONSOLE_PORT, default 8090)."""
from __future__ import annotations

import uvicorn

from services.console.app import create_app
from services.console.config import load_console_settings
from shared.logs import get_logger
from shared.runner import boot, make_broker, run, serve_until_signalled
from shared.store.errors import StoreUnavailable

log = get_logger("console")


async def serve() -> None:
    runtime = boot("console")
    settings, db = runtime.settings, runtime.db
    console = load_console_settings()
    if console.ephemeral_secret:
        log.warning("console.ephemeral_secret",
                    hint="HITL_CONSOLE_SECRET is not set: sessions end when this process restarts")
    if not any(r.password_hash for r in settings.reviewers):
        log.info("console.token_sign_in", hint="no reviewer has a password_hash: reviewers sign in with their token")
    broker = make_broker(runtime, "console")
    app = create_app(settings, console, db, broker, verifier=runtime.verifier)
    config = uvicorn.Config(app, host=console.host, port=console.port, log_level="warning",
                            timeout_keep_alive=75, timeout_graceful_shutdown=5)
    try:
        revoked = app.state.sessions.sweep()
        if revoked:
            log.info("console.sessions_revoked", count=revoked, reason="configuration changed")
    except StoreUnavailable:
        log.warning("console.session_sweep_skipped", reason="store unavailable")
    log.info("console.started", port=console.port, reviewers=len(settings.reviewers),
             oidc=console.oidc_issuer or "off")
    await serve_until_signalled(config, app.state.hub.close)  # end the event streams so the server can drain
    db.dispose()


def main() -> None:
    run(serve())


if __name__ == "__main__":
    main()
