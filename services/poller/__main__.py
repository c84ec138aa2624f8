"""python -m services.poller — tracks every Dify run and node; discovers runs; starts continuations."""
from __future__ import annotations

import asyncio

from services.poller.service import PollerService
from shared import metrics
from shared.health import ops_server
from shared.logs import get_logger
from shared.runner import boot, make_broker, stop_event_on_signals

log = get_logger("poller")


async def main() -> None:
    settings, db = boot("poller")
    broker = make_broker(settings, "poller")
    service = PollerService(settings, db, broker)
    metrics.observe_store(db, runs=True)
    stop = stop_event_on_signals()
    checks = lambda: {"broker": broker.ready, "store": db.ping()}  # noqa: E731
    ops = ops_server(settings.poller_host, settings.poller_port, checks)
    ops_task = asyncio.create_task(ops.serve())
    await broker.start(wait_s=None)
    loops = [asyncio.create_task(service.run_polling()), asyncio.create_task(service.run_discovery())]
    log.info("poller.started", apps=sorted(service.clients), ops_port=settings.poller_port)
    await stop.wait()
    log.info("poller.stopping", inflight=len(service.inflight))
    service.stop()
    await asyncio.gather(*loops)
    await service.close()
    await broker.close(drain_s=10)
    ops.should_exit = True
    await ops_task
    db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
