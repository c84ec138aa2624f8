"""python -m services.ingest — the HTTP edge (checkpoint calls, decisions, reads)."""
from __future__ import annotations

import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.ingest.app import create_app
from services.ingest.protocol import LeanHttpToolsProtocol
from shared.logs import get_logger
from shared.runner import boot, make_broker, run, serve_until_signalled

log = get_logger("ingest")


async def serve() -> None:
    runtime = boot("ingest")
    settings, db = runtime.settings, runtime.db
    broker = make_broker(runtime, "ingest")
    app = create_app(settings, db, broker, verifier=runtime.verifier)
    config = uvicorn.Config(app, host=settings.ingest_host, port=settings.ingest_port, log_level="warning",
                            timeout_keep_alive=75, backlog=4096,
                            # The gateway relays Dify's own headers exactly; our answers get a Date
                            # from the app (DateHeader), none gets uvicorn's Server header.
                            server_header=False, date_header=False,
                            # IngestApp returns the coroutine it picks (no frame of its own per held
                            # call): not a coroutine function, so the interface is said, not detected.
                            interface="asgi3", http=LeanHttpToolsProtocol,  # less memory per held call
                            # uvicorn's outermost layer would be one more frame per held call: the
                            # proxy headers (X-Forwarded-*, from the trusted proxies) go to the rest only.
                            proxy_headers=False)
    app.rest = ProxyHeadersMiddleware(app.without_fast_path, trusted_hosts=config.forwarded_allow_ips)
    log.info("ingest.started", port=settings.ingest_port, database=db.where)

    def answer_held_calls() -> None:
        # SIGTERM: answer every held call 503 now (Dify retries, on another replica), then drain.
        log.info("ingest.stopping", held=len(app.state.replies.waiters))
        app.state.replies.fail_all()

    await serve_until_signalled(config, answer_held_calls)
    db.dispose()


def main() -> None:
    run(serve())


if __name__ == "__main__":
    main()
