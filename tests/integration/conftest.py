"""Fixtures of the integration layer shared by more than one module."""
from __future__ import annotations

import pytest

from shared.store import Database
from tests.difysim.process import SimulatorDidNotStart, running_simulator


@pytest.fixture
def db(database_url):
    """A migrated store on each backend (`database_url` runs the test on SQLite and on PostgreSQL)."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(params=["1.14", "1.17"])
def simulator_url(request):
    """1.14 is the mode the recordings are of; 1.17 must keep every recorded behaviour it shares."""
    try:
        with running_simulator("--dify-version", request.param) as url:
            yield url
    except SimulatorDidNotStart as exc:
        pytest.fail(f"the simulator did not start:\n{exc}")
