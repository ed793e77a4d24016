"""Group files as configuration: the YAML mapping (the C++ agent's sections and our own
``agentbus:`` section), what a group may not set, the layers and their origins, and the
stored set (replaced at once, even under kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from commander.group_files import store_set
from core.config import check_changes, config_from_dict, load_config, with_groups
from core.groupfile import REFUSED, GroupFileError, parse_group_file
from core.groupset import read_stored
from tests.fixtures.common import wait_for


def parse(text: str, name: str = "web"):
    group = parse_group_file(name, text)
    check_changes(group)
    return group


def test_the_cpp_sections_map_onto_our_keys():
    base = config_from_dict({"collectors": {"logcollector": {"paths": ["/var/log/app.log"]}}})
    group = parse(
        """
logcollector:
  enabled: true
  read_interval: 250ms
  reload_interval: 1m
  localfiles:
    - location: /var/log/web/*.log
    - location: /var/log/app.log
inventory:
  interval: 2h
  ports: false
  hotfixes: true
sca:
  interval: 6h
  policies: [/etc/agentbus/sca/web.yml]
events:
  batch_interval: 5s
  batch_size: 2MB
"""
    )
    config = with_groups(base, [group], 1.0)
    lc = config.collectors.logcollector
    # localfiles add to the paths below (once each), they do not replace them
    assert lc.paths == ["/var/log/app.log", "/var/log/web/*.log"]
    assert lc.poll_interval == 0.25
    assert "ports" not in config.collectors.inventory.collectors
    assert "packages" in config.collectors.inventory.collectors
    assert config.collectors.inventory.interval == 7200
    assert config.collectors.sca.policies == ["/etc/agentbus/sca/web.yml"]
    assert config.forwarder.batch_interval == 5 and config.forwarder.batch_max_bytes == 2 << 20
    assert sorted(group.warnings) == [
        "inventory.hotfixes ignored: no equivalent in this agent",
        "logcollector.reload_interval ignored: no equivalent in this agent",
    ]
    assert config.origins["collectors.logcollector.paths"] == "<dict> + group:web"
    assert config.origins["forwarder.batch_max_bytes"] == "group:web"


def test_journald_filters_and_plain_localfiles_map_onto_our_keys():
    group = parse(
        """
logcollector:
  localfiles:
    - /var/log/plain.log
  journald:
    - field: "_SYSTEMD_UNIT"
      value: "cron.service"
      exact_match: true
    - field: "SYSLOG_IDENTIFIER"
      value: "sshd"
    - field: "SYSLOG_IDENTIFIER"
      value: "^sys.*"
      exact_match: false
    - conditions:
        - field: "_COMM"
          value: "cat"
"""
    )
    lc = with_groups(config_from_dict({}), [group], 1.0).collectors.logcollector
    assert lc.paths == ["/var/log/plain.log"]
    assert lc.journald_units == ["cron.service"]
    assert lc.journald_identifiers == ["sshd"]
    assert sorted(group.warnings) == [
        "logcollector.journald[2] ignored: a pattern: our journal filters take exact names only",
        "logcollector.journald[3] ignored: our journal filters take exact unit and identifier "
        "names only",
    ]
    with pytest.raises(GroupFileError, match=r"logcollector.journald\[0\].value"):
        parse("logcollector:\n  journald:\n    - field: _SYSTEMD_UNIT\n")


def test_unknown_sections_are_ignored_with_one_warning_each_and_an_empty_file_is_fine():
    group = parse("syscheck: {frequency: 60}\nwodle: [1]\nlabels: {a: b}\n")
    assert group.changes == []
    assert len(group.warnings) == 3 and all("ignored" in w for w in group.warnings)
    assert parse("").changes == [] and parse("# nothing\n").changes == []


def test_our_own_section_uses_our_key_names_strictly():
    group = parse(
        "agentbus:\n  forwarder:\n    max_eps: 500\n  collectors:\n    fim:\n      interval: 1h\n"
    )
    config = with_groups(config_from_dict({}), [group], None)
    assert config.forwarder.max_eps == 500 and config.collectors.fim.interval == 3600
    with pytest.raises(GroupFileError, match=r"agentbus.forwarder.max_epz: unknown key"):
        parse("agentbus:\n  forwarder:\n    max_epz: 500\n")
    with pytest.raises(GroupFileError, match=r"agentbus.forwarder: must be a table"):
        parse("agentbus:\n  forwarder: 5\n")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("events:\n  batch_size: plenty\n", "events.batch_size"),
        ("logcollector:\n  read_interval: soon\n", "logcollector.read_interval"),
        ("logcollector:\n  localfiles:\n    - {}\n", "logcollector.localfiles[0].location"),
        ("logcollector:\n  localfiles: /var/log/x\n", "logcollector.localfiles"),
        ("inventory:\n  ports: maybe\n", "inventory.ports"),
        ("sca:\n  policies: /x.yml\n", "sca.policies"),
        (
            "agentbus:\n  collectors:\n    fim:\n      enabled: sometimes\n",
            "agentbus.collectors.fim.enabled",
        ),
        ("agentbus:\n  forwarder:\n    when_full: explode\n", "agentbus.forwarder.when_full"),
    ],
)
def test_a_bad_value_refuses_the_file_naming_its_key(text, key):
    with pytest.raises(GroupFileError) as caught:
        parse(text)
    assert caught.value.key == key


@pytest.mark.parametrize("path", sorted(REFUSED), ids=".".join)
def test_what_a_group_may_never_set_is_refused_with_the_reason(path):
    # a key under a refused section, or the refused key itself, in our own vocabulary
    leaf = {
        ("agent",): {"server_url": "https://evil.example"},
        ("bus",): {"events_endpoint": "tcp://0.0.0.0:1"},
        ("health",): {"enabled": True},
        ("commander",): {"agent_executor": False},
        ("log",): {"file": "/etc/cron.d/x"},
    }.get(path, ["x"])
    node: object = leaf
    for part in reversed(path):
        node = {part: node}
    with pytest.raises(GroupFileError, match="refused: .* by the local file only"):
        parse(yaml.safe_dump({"agentbus": node}))


def test_the_cpp_agent_section_is_refused_too():
    with pytest.raises(GroupFileError) as caught:
        parse("agent:\n  server_url: https://evil.example\n")
    assert caught.value.key == "agent" and "local file only" in caught.value.what


def test_precedence_defaults_file_groups_in_order_then_environment(tmp_path):
    data = tmp_path / "data"
    local = tmp_path / "agent.toml"
    local.write_text(
        f'[agent]\ndata_dir = "{data}"\n[forwarder]\nmax_eps = 10\nbatch_interval = "2s"\n'
        '[collectors.logcollector]\npaths = ["/var/log/local.log"]\n'
    )
    store_set(
        data,
        [
            ("first", b"agentbus:\n  forwarder:\n    max_eps: 20\n    stateless_in_flight: 2\n"),
            (
                "second",
                b"agentbus:\n  forwarder:\n    max_eps: 30\nlogcollector:\n  localfiles:\n    - location: /g.log\n",
            ),
        ],
    )
    config = load_config(local, environ={"AGENTBUS_FORWARDER_STATELESS_IN_FLIGHT": "3"})
    assert config.groups == ("first", "second") and config.groups_applied_at
    assert config.forwarder.max_eps == 30  # the later group wins
    assert config.origins["forwarder.max_eps"] == "group:second"
    assert config.forwarder.stateless_in_flight == 3
    assert (
        config.origins["forwarder.stateless_in_flight"]
        == "env:AGENTBUS_FORWARDER_STATELESS_IN_FLIGHT"
    )
    assert config.origins["forwarder.batch_interval"] == str(local)
    assert config.origins["forwarder.backoff_max"] == "default"
    assert config.collectors.logcollector.paths == ["/var/log/local.log", "/g.log"]
    assert config.origins["collectors.logcollector.paths"] == f"{local} + group:second"
    # without the groups: the local file alone
    assert load_config(local, environ={}, groups=False).forwarder.max_eps == 10


def test_a_stored_file_that_is_unusable_now_is_left_out_not_fatal(tmp_path):
    data = tmp_path / "data"
    local = tmp_path / "agent.toml"
    local.write_text(f'[agent]\ndata_dir = "{data}"\n')
    store_set(
        data,
        [
            ("good", b"agentbus:\n  forwarder:\n    max_eps: 5\n"),
            ("bad", b"events: {batch_size: x}\n"),
        ],
    )
    config = load_config(local, environ={})
    assert config.groups == ("good",) and config.forwarder.max_eps == 5
    assert "events.batch_size" in config.groups_skipped["bad"]


STORE_LOOP = """
import sys
from commander.group_files import store_set
data, n = sys.argv[1], 0
print("ready", flush=True)
while True:
    n += 1
    store_set(data, [(f"g{i}", f"# set {n}\\n".encode() * 2000) for i in range(20)])
"""


@pytest.mark.timeout(60)
def test_a_kill_9_while_storing_leaves_one_whole_set(tmp_path):
    data = tmp_path / "data"
    store_set(data, [(f"g{i}", b"# set 0\n" * 2000) for i in range(20)])
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", STORE_LOOP, str(data)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        first = read_stored(data).applied_at
        wait_for(lambda first=first: read_stored(data).applied_at != first, timeout=20)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = read_stored(data)
        assert stored.groups == [f"g{i}" for i in range(20)] and not stored.problems
        # every file of the set is from the same store
        assert len({text for _group, text in stored.files}) == 1
    # what the killed stores left behind goes at the next store
    store_set(data, [("web", b"")])
    assert len([p for p in data.glob("groups.*") if p.is_dir()]) == 1
