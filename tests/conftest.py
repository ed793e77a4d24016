"""Shared fixtures. Each area's fixtures live in tests/fixtures/ and are plugged in here."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.refserver",
    "tests.fixtures.agent",
    "tests.fixtures.commander",
    "tests.fixtures.collectors",
    "tests.fixtures.forwarder",
    "tests.fixtures.run",
    "tests.fixtures.other_user",
    "tests.fakes.fixtures",
]
