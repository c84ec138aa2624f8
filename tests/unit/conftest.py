"""Fixtures of the unit layer shared by more than one module."""
from __future__ import annotations

import pytest

from tests.unit.console_support import plain_console


@pytest.fixture
def console(sqlite_url):
    """The console app in-process and its store: (app, db); see console_support.plain_console."""
    yield from plain_console(sqlite_url)
