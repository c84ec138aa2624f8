"""python -m services.notifier — tells reviewers about checkpoints in chat and mail, takes their clicks.

HTTP on HITL_NOTIFIER_HOST:HITL_NOTIFIER_PORT (default 127.0.0.1:8083): platform callbacks, decision
links, /healthz, /readyz, /metrics. Platforms and reviewers reach it at HITL_NOTIFIER_PUBLIC_URL.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette

from services.notifier.decisions import Decisions
from services.notifier.guard import NOTIFIER_PREFETCH
from services.notifier.links import LinkSigner
from services.notifier.registry import build_channels
from services.notifier.service import NotifierService
from services.notifier.web import create_app
from shared.broker import Broker
from shared.broker.replies import ReplyRouter
from shared.logs import get_logger
from shared.runner import Runtime, boot, run, serve_until_signalled
from shared.store import Database, keys
from shared.topology import build_topology

log = get_logger("notifier")
LINK_KEY = "notifier-links"


def link_secret(runtime: Runtime) -> str:
    """HITL_NOTIFIER_LINK_SECRET, or a key kept in the store (the same for every replica)."""
    if runtime.settings.notifier_link_secret:
        return runtime.settings.notifier_link_secret
    db: Database = runtime.db
    with db.write() as conn:
        return keys.get_or_create(conn, LINK_KEY)


async def serve() -> None:
    runtime = boot("notifier")
    settings, db = runtime.settings, runtime.db
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
    channels = build_channels(settings, http)  # a bad channel setting stops the process here, named
    if not channels:
        log.warning("notifier.no_channels", hint="HITL_CHANNELS is empty: nothing will be sent")
    elif not settings.notify:
        log.warning("notifier.no_rules", hint="HITL_NOTIFY is empty: no checkpoint matches a rule")
    signer = LinkSigner(link_secret(runtime), settings.notifier_url)
    # make_broker's, with a larger prefetch: jobs of a slow platform wait here for a call slot, and
    # the other channels' jobs must still reach this process meanwhile (guard.py).
    broker = Broker(settings.rabbitmq_url, name="notifier",
                    topology=build_topology(settings.names, settings.quorum_group_size, with_notifier=True),
                    prefetch=max(settings.prefetch, NOTIFIER_PREFETCH), handler_threads=settings.store_threads,
                    max_attempts=settings.max_delivery_attempts, signing_key=runtime.signing_key)
    NotifierService(settings, db, broker, runtime.verifier, channels, signer)
    replies = ReplyRouter(broker, settings.names, instance=str(settings.notifier_port), role="notifier",
                          verifier=runtime.verifier)
    decisions = Decisions(settings, db, broker, replies)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await broker.start(wait_s=None)  # keeps retrying; /readyz says when it is up
        log.info("notifier.started", port=settings.notifier_port, url=settings.notifier_url,
                 channels=sorted(channels), rules=len(settings.notify))
        yield
        replies.fail_all()
        await broker.close(drain_s=10)
        await http.aclose()

    app = create_app(channels, decisions, signer, body_limit=settings.body_limit_bytes,
                     ready=lambda: {"broker": broker.ready, "store": db.ready()}, lifespan=lifespan)
    config = uvicorn.Config(app, host=settings.notifier_host, port=settings.notifier_port, log_level="warning",
                            timeout_keep_alive=75, timeout_graceful_shutdown=10)
    await serve_until_signalled(config, replies.fail_all)
    db.dispose()


def main() -> None:
    run(serve())


if __name__ == "__main__":
    main()
