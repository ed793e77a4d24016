"""The Node.js example collector (written from docs/bus-protocol.md) feeds the real agent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.common import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-collector"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None, reason="Node.js is not installed (node not on PATH)"
)


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The example with its npm packages installed (``make test`` installs them first)."""
    if not (EXAMPLE / "node_modules" / "zeromq").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: cannot install the example's packages"
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=EXAMPLE,
            check=True,
            timeout=300,
        )
    return EXAMPLE


@pytest.mark.timeout(120)
def test_node_collector_events_reach_the_server(node_example, sink, make_config):
    run_dir = make_config({}).agent.run_dir
    lines = [f"from node {i} ünïcode" for i in range(1200)]
    done = subprocess.run(
        ["node", "collector.js", "--run-dir", run_dir, "--module", "nodeapp", "--batch", "250"],
        cwd=node_example,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"accepted":1200' in done.stdout
    wait_for(lambda: sink.count() >= 1200, timeout=30)
    events = sink.snapshot()
    assert {(e["module"], e["collector"], e["type"]) for e in events} == {
        ("nodeapp", "stdin", "stateless")
    }
    assert [e["data"]["event"]["original"] for e in events] == lines


@pytest.mark.timeout(60)
def test_node_collector_learns_of_rejected_events(node_example, pipeline, make_config):
    run_dir = make_config({}).agent.run_dir
    done = subprocess.run(
        ["node", "collector.js", "--run-dir", run_dir, "--module", ""],
        cwd=node_example,
        input="one line\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "rejected" in done.stderr and "module" in done.stderr


@pytest.mark.timeout(60)
def test_node_collector_fast_path(node_example, sink, make_config):
    run_dir = make_config({}).agent.run_dir
    done = subprocess.run(
        ["node", "collector.js", "--run-dir", run_dir, "--fast", "--collector", "push"],
        cwd=node_example,
        input="".join(f"pushed {i}\n" for i in range(300)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: sink.count() >= 300, timeout=30)
    originals = [e["data"]["event"]["original"] for e in sink.snapshot()]
    assert sorted(originals) == sorted(f"pushed {i}" for i in range(300))
