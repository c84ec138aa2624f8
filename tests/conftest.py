"""Shared fixtures: the real RabbitMQ and the SQL stores the tests run against.

RABBITMQ_URL / DATABASE_URL (a PostgreSQL server URL) come from the environment when set (CI and
this machine); otherwise testcontainers starts them where a Docker engine exists; otherwise the
tests that need them are skipped with the reason.
"""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from shared.settings import AppConfig, BotConfig, ReviewerConfig, Settings

APP_TOKEN = "cp-test-token-0001"
REVIEWERS = {"alice": "rv-alice-token", "bob": "rv-bob-token", "carol": "rv-carol-token", "bot": "rv-bot-token"}
BOT, BOT_SECRET = "testbot", "testbot-signing-secret-0123"


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    if os.environ.get("RABBITMQ_URL"):
        yield os.environ["RABBITMQ_URL"]
        return
    if not _docker_available():
        pytest.skip("no RABBITMQ_URL and no Docker engine for testcontainers")
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13") as rmq:
        params = rmq.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/%2F"


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    if not _docker_available():
        pytest.skip("no DATABASE_URL and no Docker engine for testcontainers")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16", driver="psycopg") as pg:
        yield pg.get_connection_url()


def _fresh_postgres_db(base_url: str) -> tuple[str, callable]:
    from demo.stack import fresh_postgres_db

    return fresh_postgres_db(base_url, "hitl_test")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """Each test that takes this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hitl.db'}"
        return
    url, drop = _fresh_postgres_db(request.getfixturevalue("postgres_base_url"))
    yield url
    drop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hitl.db'}"


def make_settings(database_url: str, rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
                  **overrides) -> Settings:
    values = dict(
        database_url=database_url, rabbitmq_url=rabbitmq_url, namespace=f"t{uuid.uuid4().hex[:10]}",
        apps=[AppConfig(name="demo", checkpoint_token=APP_TOKEN)],
        reviewers=[ReviewerConfig(name=n, token=t, groups=["editors"] if n == "carol" else [], apps=["demo"])
                   for n, t in REVIEWERS.items()],
        bots=[BotConfig(name=BOT, secret=BOT_SECRET, acts_for=["*"], apps=["demo"])],
        deadline_scan_interval_s=0.1, republish_after_s=0.5)
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_KEY = b"unit-test-internal-signing-key-0123456789"


def memory_broker(settings: Settings, key: bytes = TEST_KEY):
    """The one in-memory broker of the unit tests (shared/broker/memory.py), with this settings'
    topology (the notifier's queues too: the unit world runs every process) and an internal signing key."""
    from shared.broker.memory import MemoryBroker
    from shared.topology import build_topology

    return MemoryBroker(name="unit", topology=build_topology(settings.names, with_notifier=True), signing_key=key)


def verifier(settings: Settings, key: bytes = TEST_KEY):
    from shared.runner import verifier_for

    return verifier_for(settings, key)
