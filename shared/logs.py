"""structlog setup: JSON lines in production, readable lines in a terminal.

Context (message_id, checkpoint_id, run_id, queue) is bound per delivery with
`structlog.contextvars`, so every line of one message's story carries it.
"""
from __future__ import annotations

import logging
import sys

import structlog

# Keys whose values must never reach a log line, whatever a caller binds.
SECRET_KEYS = {"token", "authorization", "api_key", "dify_api_key", "checkpoint_token", "form_token", "password"}


def _redact(_logger, _name, event_dict):
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def setup_logging(level: str = "INFO", fmt: str = "auto", process: str = "hitl") -> None:
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    # pika logs every reconnect attempt at WARNING with tracebacks; our broker module logs them once.
    logging.getLogger("pika").setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Dify call is the metrics' job
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
