"""python -m services.ingest — the HTTP edge (checkpoint calls, decisions, reads)."""
from __future__ import annotations

import asyncio

import uvicorn

from services.ingest.app import create_app
from shared.logs import get_logger
from shared.runner import boot, make_broker, run, stop_event_on_signals

log = get_logger("ingest")


async def main() -> None:
    settings, db = boot("ingest")
    broker = make_broker(settings, "ingest")
    app = create_app(settings, db, broker)
    config = uvicorn.Config(app, host=settings.ingest_host, port=settings.ingest_port, log_level="warning",
                            timeout_keep_alive=75, backlog=4096)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None
    stop = stop_event_on_signals()
    serving = asyncio.create_task(server.serve())
    log.info("ingest.started", port=settings.ingest_port, database=db.url.split("@")[-1])
    await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    # SIGTERM: answer every held call 503 now (Dify retries, on another replica), then drain.
    log.info("ingest.stopping", held=len(app.state.replies.waiters))
    app.state.replies.fail_all()
    server.should_exit = True
    await serving
    db.dispose()


if __name__ == "__main__":
    run(main())
