"""Fixtures of the integration layer shared by more than one module."""
from __future__ import annotations

import pytest

from tests.difysim.process import SimulatorDidNotStart, running_simulator


@pytest.fixture(params=["1.14", "1.17"])
def simulator_url(request):
    """1.14 is the mode the recordings are of; 1.17 must keep every recorded behaviour it shares."""
    try:
        with running_simulator("--dify-version", request.param) as url:
            yield url
    except SimulatorDidNotStart as exc:
        pytest.fail(f"the simulator did not start:\n{exc}")
