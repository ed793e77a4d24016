"""A server shared by a module's tests that only send requests and read answers (faster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.refserver import RefServer
from tests.refserver.helpers import Agent, enroll


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServer]:
    server = RefServer(tmp_path_factory.mktemp("refserver") / "data", command_hold=1.0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def agent(shared_server: RefServer) -> Agent:
    """A fresh agent enrolled with the shared server and authenticated."""
    return enroll(shared_server.url)
