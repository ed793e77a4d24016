"""The ``fake_server`` fixture (plugged in by tests/conftest.py), like dramatiq's
``stub_broker``: a fresh :class:`~tests.fakes.server.FakeServer` per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.server import FakeServer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """An in-memory server; a test that scripted answers no request took fails, since it
    did not test what it meant to."""
    server = FakeServer()
    yield server
    unused = server.unused()
    assert not unused, f"scripted answers never used: {unused}"
