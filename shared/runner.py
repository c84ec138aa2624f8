"""Process start-up shared by every service: settings, logging, store, broker, signals."""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.broker import Broker
from shared.broker.signing import Verifier
from shared.logs import get_logger, setup_logging
from shared.settings import Settings, load_settings
from shared.store import Database, keys
from shared.topology import build_topology

log = get_logger(__name__)


def run(main) -> None:
    """Run a process's main coroutine on uvloop (less CPU and memory per socket and per callback
    than the stock loop); HITL_EVENT_LOOP=asyncio picks the stock loop."""
    if os.environ.get("HITL_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


@dataclass(frozen=True)
class Runtime:
    """What every process starts from: its settings, the store, and the key its messages are signed
    with (with a verifier that knows it and the bots' secrets)."""

    settings: Settings
    db: Database
    signing_key: bytes
    verifier: Verifier


def signing_key(settings: Settings, db: Database) -> bytes:
    """HITL_INTERNAL_KEY, or the key kept in the store (created by the first process to ask)."""
    if settings.internal_key:
        return settings.internal_key.encode()
    with db.write() as conn:
        return keys.get_or_create(conn, keys.INTERNAL).encode()


def verifier_for(settings: Settings, key: bytes) -> Verifier:
    return Verifier(key, {b.name: b.secret.encode() for b in settings.bots})


def boot(process: str, settings: Settings | None = None) -> Runtime:
    settings = settings or load_settings()
    setup_logging(settings.log_level, settings.log_format, process)
    db = Database(settings.database_url)
    if settings.auto_migrate:
        db.migrate()
    key = signing_key(settings, db)
    return Runtime(settings, db, key, verifier_for(settings, key))


def make_broker(runtime: Runtime, name: str) -> Broker:
    s = runtime.settings
    return Broker(s.rabbitmq_url, name=name, topology=build_topology(s.names, s.quorum_group_size),
                  prefetch=s.prefetch, handler_threads=s.store_threads, max_attempts=s.max_delivery_attempts,
                  signing_key=runtime.signing_key)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so a process can drain instead of dying mid-message."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until_signalled(config, before_drain: Callable[[], None]) -> None:
    """Serve a uvicorn `config` until SIGTERM or SIGINT; then `before_drain()` (answer what must not
    wait for the drain: held calls, event streams) and let the server finish its requests."""
    from shared.health import QuietServer

    server = QuietServer(config)  # our signal handlers, so the drain above runs first
    stop = stop_event_on_signals()
    serving = asyncio.create_task(server.serve())
    await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    before_drain()
    server.should_exit = True
    await serving


async def run_worker(process: str, make_service: Callable[[Runtime, Any], Any],
                     address: Callable[[Settings], tuple[str, int]]) -> None:
    """The life of a broker worker process (decider, poller, notifier): ops endpoints, broker, the
    service's background loops; on SIGTERM stop taking work, let loops and in-flight messages finish.

    `make_service(runtime, broker)` returns an object with `background()` (coroutines to run),
    `stop()` and `async close()`; `address(settings)` is the (host, port) of the ops endpoints."""
    from shared.health import ops_server

    runtime = boot(process)
    settings, db = runtime.settings, runtime.db
    broker = make_broker(runtime, process)
    service = make_service(runtime, broker)
    stop = stop_event_on_signals()
    host, port = address(settings)
    ops = ops_server(host, port, lambda: {"broker": broker.ready, "store": db.ready()})
    ops_task = asyncio.create_task(ops.serve())
    await broker.start(wait_s=None)  # keeps retrying in the background until RabbitMQ answers
    loops = [asyncio.create_task(c) for c in service.background()]
    log.info(f"{process}.started", ops_port=port, database=db.where)
    await stop.wait()
    log.info(f"{process}.stopping")
    service.stop()
    await asyncio.gather(*loops)
    await service.close()
    await broker.close(drain_s=10)
    ops.should_exit = True
    await ops_task
    db.dispose()
