"""Process start-up shared by every service: settings, logging, store, broker, signals."""
from __future__ import annotations

import asyncio
import signal

from shared.broker import Broker
from shared.logs import get_logger, setup_logging
from shared.settings import Settings, load_settings
from shared.store import Database
from shared.topology import build_topology

log = get_logger(__name__)


def boot(process: str) -> tuple[Settings, Database]:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, process)
    db = Database(settings.database_url)
    if settings.auto_migrate:
        db.migrate()
    return settings, db


def make_broker(settings: Settings, name: str) -> Broker:
    return Broker(settings.rabbitmq_url, name=name, topology=build_topology(settings.names), prefetch=settings.prefetch,
                  handler_threads=settings.handler_threads, max_attempts=settings.max_delivery_attempts)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so a process can drain instead of dying mid-message."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
