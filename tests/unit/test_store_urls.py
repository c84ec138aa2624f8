"""PostgreSQL URLs as people write them (plain, libpq multi-host) become what the psycopg 3 driver
of SQLAlchemy reads; and a handler whose store connection died is run again at once."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from shared.broker.errors import RetryLater
from shared.broker.router import in_store
from shared.store.errors import StoreUnavailable
from shared.store.urls import describe_database_url, normalise_database_url


def test_plain_postgres_urls_get_the_driver_name_and_sqlite_is_kept():
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgresql://u:p@h:5433/db?sslmode=require") == \
        "postgresql+psycopg://u:p@h:5433/db?sslmode=require"
    assert normalise_database_url("sqlite:///./var/hitl.db") == "sqlite:///./var/hitl.db"
    with pytest.raises(ValueError, match="sqlite:/// or postgresql://"):
        normalise_database_url("mysql://u@h/db")


def test_a_libpq_host_list_becomes_host_parameters_that_libpq_gets_back():
    url = normalise_database_url("postgresql://u:p@pg-0:5432,pg-1:5433/hitl?target_session_attrs=read-write")
    assert url == ("postgresql+psycopg://u:p@/hitl?host=pg-0:5432&host=pg-1:5433"
                   "&target_session_attrs=read-write")
    parsed = make_url(url)
    assert parsed.query["host"] == ("pg-0:5432", "pg-1:5433") and parsed.database == "hitl"
    assert normalise_database_url(url) == url  # already normalised: unchanged


def test_a_host_list_without_target_session_attrs_asks_for_the_host_that_takes_writes():
    url = normalise_database_url("postgresql://u@pg-0,pg-1/hitl?sslmode=require")
    assert make_url(url).query == {"host": ("pg-0", "pg-1"), "sslmode": "require",
                                   "target_session_attrs": "read-write"}
    kept = normalise_database_url("postgresql://u@pg-0,pg-1/hitl?target_session_attrs=primary")
    assert make_url(kept).query["target_session_attrs"] == "primary"


def test_a_host_list_given_twice_or_with_a_hole_is_refused():
    with pytest.raises(ValueError, match="not both"):
        normalise_database_url("postgresql://u@pg-0,pg-1/hitl?host=pg-2")
    with pytest.raises(ValueError, match="empty host"):
        normalise_database_url("postgresql://u@pg-0,,pg-1/hitl")


def test_the_description_for_logs_has_hosts_and_database_but_no_credentials():
    multi = normalise_database_url("postgresql://u:secret@pg-0:5432,pg-1:5432/hitl")
    assert describe_database_url(multi) == "hitl@pg-0:5432,pg-1:5432"
    assert describe_database_url("postgresql+psycopg://u:secret@pg:5432/hitl") == "hitl@pg:5432"
    assert describe_database_url("sqlite:///var/hitl.db") == "var/hitl.db"


# ---------------------------------------------------------------------- a transaction whose connection died
def broker() -> SimpleNamespace:
    return SimpleNamespace(executor=ThreadPoolExecutor(max_workers=1))


def flaky(*failures: StoreUnavailable):
    calls: list[int] = []

    def handler(value: int) -> int:
        calls.append(value)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return value * 2
    return handler, calls


def test_a_transaction_whose_connection_died_is_run_again_at_once():
    handler, calls = flaky(StoreUnavailable("server closed the connection", connection_lost=True))
    assert asyncio.run(in_store(broker(), handler, 21)) == 42
    assert calls == [21, 21]


def test_a_store_that_is_down_makes_the_message_wait_uncounted_without_a_second_try():
    handler, calls = flaky(StoreUnavailable("connection refused"))
    with pytest.raises(RetryLater) as err:
        asyncio.run(in_store(broker(), handler, 1))
    assert err.value.counted is False and calls == [1]


def test_a_retry_that_fails_too_makes_the_message_wait():
    handler, calls = flaky(StoreUnavailable("terminated", connection_lost=True),
                           StoreUnavailable("connection refused"))
    with pytest.raises(RetryLater) as err:
        asyncio.run(in_store(broker(), handler, 1))
    assert err.value.counted is False and calls == [1, 1]
