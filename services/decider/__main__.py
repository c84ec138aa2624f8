"""python -m services.decider — the checkpoint state machine (the only writer of checkpoints)."""
from __future__ import annotations

import asyncio

from services.decider.service import DeciderService
from shared import metrics
from shared.health import ops_server
from shared.logs import get_logger
from shared.runner import boot, make_broker, stop_event_on_signals

log = get_logger("decider")


async def main() -> None:
    settings, db = boot("decider")
    broker = make_broker(settings, "decider")
    service = DeciderService(settings, db, broker)
    metrics.observe_store(db, checkpoints=True)
    stop = stop_event_on_signals()
    checks = lambda: {"broker": broker.ready, "store": db.ping()}  # noqa: E731
    ops = ops_server(settings.decider_host, settings.decider_port, checks)
    ops_task = asyncio.create_task(ops.serve())
    await broker.start(wait_s=None)  # keeps retrying in the background until RabbitMQ answers
    deadlines = asyncio.create_task(service.run_deadlines())
    log.info("decider.started", ops_port=settings.decider_port, database=db.url.split("@")[-1])
    await stop.wait()
    log.info("decider.stopping")
    service.stop()
    await deadlines
    await broker.close(drain_s=10)
    ops.should_exit = True
    await ops_task
    db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
