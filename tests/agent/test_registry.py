"""The service registry (core/registry.py) and what reads it: the CLI, the supervisor, the
configuration and ``agentbus status``; the service lifecycle's resources and fatal path."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.children import ProcessChild, ThreadChild, make_children
from agent.main import build_parser
from agent.status import services_asked
from bus.control import request
from bus.errors import AgentbusError, EndpointInUse
from core import registry
from core.config import DEFAULT_CONFIG_FILE, ConfigError, config_from_dict, load_config
from core.service import Service
from tests.fixtures.common import wait_for

NAMES = ["forwarder", "commander", "agent-executor", "logcollector", "inventory", "fim", "sca"]


def test_the_table_lists_every_built_in_service_in_start_order():
    assert registry.names() == NAMES
    assert registry.SERVICES[0].ready_first  # the forwarder: everything sends to it
    assert [s.name for s in registry.SERVICES if s.once] == ["inventory", "fim", "sca"]


@pytest.mark.parametrize("spec", registry.SERVICES, ids=lambda s: s.name)
def test_every_entry_point_is_a_service_of_that_name(spec):
    cls = spec.load()
    assert issubclass(cls, Service)
    assert cls.name == spec.name


def test_strings_that_name_nothing_are_refused():
    with pytest.raises(ValueError, match="module:attribute"):
        registry.resolve("forwarder.service")
    with pytest.raises(ImportError, match="no attribute"):
        registry.resolve("forwarder.service:Nothing")


def test_collector_sections_come_from_the_collectors_packages():
    config = config_from_dict({})
    for name, spec in registry.collectors():
        assert type(getattr(config.collectors, name)) is spec.load_settings()
    assert sorted(config.collectors) == ["fim", "inventory", "logcollector", "sca"]
    # the packaged default file has a table for each, with the dataclass defaults
    assert load_config(DEFAULT_CONFIG_FILE, environ={}).collectors == config.collectors


def test_an_unknown_collector_section_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"collectors\.nope: unknown key"):
        config_from_dict({"collectors": {"nope": {}}})
    with pytest.raises(ConfigError, match=r"collectors\.fim\.pathz: unknown key"):
        config_from_dict({"collectors": {"fim": {"pathz": []}}})
    with pytest.raises(ConfigError, match="AGENTBUS_COLLECTORS_NOPE_ENABLED names no"):
        load_config(DEFAULT_CONFIG_FILE, environ={"AGENTBUS_COLLECTORS_NOPE_ENABLED": "1"})


def test_enabled_services_follow_the_config():
    everything = config_from_dict({})
    assert [s.name for s in registry.enabled(everything)] == NAMES
    some = config_from_dict(
        {
            "commander": {"agent_executor": False},
            "collectors": {"fim": {"enabled": False}, "logcollector": {"enabled": False}},
        }
    )
    assert [s.name for s in registry.enabled(some)] == [
        "forwarder",
        "commander",
        "inventory",
        "sca",
    ]
    assert services_asked(some) == ["agent", "forwarder", "commander", "inventory", "sca"]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_the_supervisor_starts_each_enabled_service_the_one_way(tmp_path, isolation):
    path = tmp_path / "agentbus.toml"
    path.write_text(
        f'[agent]\nisolation = "{isolation}"\n[collectors.inventory]\nenabled = false\n'
    )
    config = load_config(path, environ={})
    children = make_children(config, lambda: None)
    assert [child.name for child in children] == [
        "forwarder",
        "commander",
        "agent-executor",
        "logcollector",
        "fim",
        "sca",
    ]
    kind = {"thread": ThreadChild, "process": ProcessChild}[isolation]
    assert all(type(child) is kind for child in children)
    for child in children:
        if isinstance(child, ProcessChild):
            argv = [sys.executable, "-m", "agent.main", child.name, "--config", str(path)]
            assert child.argv == argv


def test_a_service_named_in_own_process_gets_a_process_among_threads(tmp_path):
    path = tmp_path / "agentbus.toml"
    path.write_text('[agent]\nown_process = ["fim"]\n')
    children = make_children(load_config(path, environ={}), lambda: None)
    kinds = {child.name: type(child) for child in children}
    assert kinds["fim"] is ProcessChild
    assert {kinds[n] for n in kinds if n != "fim"} == {ThreadChild}
    path.write_text('[agent]\nown_process = ["fim", "nosuch"]\n')
    with pytest.raises(ConfigError, match="nosuch is no built-in service"):
        make_children(load_config(path, environ={}), lambda: None)


def test_isolation_is_thread_unless_the_config_says_otherwise(tmp_path):
    assert load_config(DEFAULT_CONFIG_FILE, environ={}).agent.isolation == "thread"
    path = tmp_path / "agentbus.toml"
    path.write_text('[agent]\nisolation = "processes"\n')
    with pytest.raises(ConfigError, match="isolation"):
        load_config(path, environ={})


def test_every_service_has_its_subcommand():
    parser = build_parser()
    for name in NAMES:
        args = parser.parse_args([name, "--config", "x.toml"])
        if name == "sca":  # its own module: `agentbus sca` runs the service, `sca run` assesses
            assert args.func.__module__ == "agent.cli.sca" and args.sca_action is None
            continue
        assert args.func.args == (name,)
    assert parser.parse_args(["fim", "--once"]).once is True
    with pytest.raises(SystemExit):
        parser.parse_args(["forwarder", "--once"])


def test_a_collector_refuses_to_start_without_enrollment_through_the_cli(make_config, tmp_path):
    config = make_config({})
    path = tmp_path / "agentbus.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{config.agent.data_dir}"\nrun_dir = "{config.agent.run_dir}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "fim", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "register" in done.stderr


# -- the lifecycle ------------------------------------------------------------------------
class _Opens(Service):
    name = "opens"

    def __init__(self, config, fail_at: int | None) -> None:
        super().__init__(config)
        self.fail_at = fail_at
        self.released: list[int] = []
        self.ran = False

    def startup(self) -> None:
        for i in range(3):
            if i == self.fail_at:
                raise EndpointInUse(f"resource {i} is in use")
            self.resources.callback(self.released.append, i)

    def main_loop(self) -> None:
        self.ran = True


def test_a_failed_startup_releases_what_it_opened_and_raises(make_config):
    service = _Opens(make_config({}), fail_at=2)
    with pytest.raises(EndpointInUse, match="resource 2"):
        service.run()
    assert service.released == [1, 0] and not service.ran
    assert service.stop_event.is_set()


def test_after_a_run_the_resources_are_released_last_first(make_config):
    service = _Opens(make_config({}), fail_at=None)
    assert service.run() == 0
    assert service.ran and service.released == [2, 1, 0]


class _Refused(Service):
    name = "refused"

    def main_loop(self) -> None:
        threading.Thread(target=self.fail, args=(AgentbusError("key refused"),)).start()
        self.stop_event.wait(10)
        self.fail(AgentbusError("a second error is not kept"))


def test_fail_from_any_thread_stops_the_service_and_run_raises_it(make_config):
    with pytest.raises(AgentbusError, match="key refused"):
        _Refused(make_config({})).run()


def test_the_agent_executor_is_a_service_with_a_control_socket(make_config, run_service):
    from commander.agent_executor import AgentExecutorService

    config = make_config({})
    thread = run_service(AgentExecutorService(config))
    endpoint = f"ipc://{config.agent.run_dir}/control-agent-executor.sock"
    wait_for(lambda: _answers(endpoint), timeout=10)
    reply = request(endpoint, {"cmd": "status"}, timeout=2)
    assert reply["ok"] and reply["service"] == "agent-executor"
    assert thread.stop() == 0


def _answers(endpoint: str) -> bool:
    try:
        request(endpoint, {"cmd": "status"}, timeout=0.5)
    except Exception:
        return False
    return True
