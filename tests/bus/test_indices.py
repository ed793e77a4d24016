"""bus.indices: the index mappings and the indexer's check, rule by rule."""

from __future__ import annotations

import pytest

from bus.indices import (
    INDICES,
    MAPPER,
    STRICT,
    check_document,
    index_for,
    index_name,
    index_to_check,
)

HARDWARE = index_for("inventory", "hardware")
NETWORKS = index_for("inventory", "networks")
FIM = index_for("fim", None)
COMMANDS = index_for("command", None)


def test_every_stateful_route_names_its_index():
    assert {i.name for i in INDICES} == {
        "wazuh-states-fim",
        "wazuh-states-sca",
        "wazuh-commands",
        *(
            f"wazuh-states-inventory-{c}"
            for c in (
                "hardware",
                "hotfixes",
                "networks",
                "packages",
                "ports",
                "processes",
                "system",
            )
        ),
    }
    for index in INDICES:
        assert index_name(index.module, index.collector) == index.name
    assert index_for("vulnerability", None) is None
    assert index_name("vulnerability", None) == "wazuh-states-vulnerabilities"
    # a collector names an index only under inventory
    assert index_for("fim", "file") is FIM


@pytest.mark.parametrize(
    ("data", "error", "field"),
    [
        ({"vendor": "x"}, STRICT, "vendor"),
        ({"host": {"memory": {"used": 5}}}, MAPPER, "host.memory.used"),
        ({"host.cpu": 1}, MAPPER, "host.cpu"),
        ({"host": {"cpu": {"cores": "many"}}}, MAPPER, "host.cpu.cores"),
        ({"host": {"cpu": {"cores": True}}}, MAPPER, "host.cpu.cores"),
        ({"host": {"cpu": {"cores": {"n": 1}}}}, MAPPER, "host.cpu.cores"),
        ({"host": {"cpu": {"cores": 2**63}}}, MAPPER, "host.cpu.cores"),
        ({"@timestamp": "yesterday"}, MAPPER, "@timestamp"),
        ({}, MAPPER, ""),
        ({"agent": {"id": "x"}}, MAPPER, "agent"),
    ],
)
def test_refusals_name_the_field_and_the_indexers_error(data, error, field):
    problem = check_document(HARDWARE, data)
    assert problem is not None
    assert (problem.error, problem.field) == (error, field)
    assert str(problem).startswith(error + ": ")


@pytest.mark.parametrize(
    "data",
    [
        {"host": {"memory": {"used": {"percentage": 42}}}},
        {"host.memory.used.percentage": 42},  # a dotted key is the same field
        {"host": {"cpu": {"cores": "4", "usage": 0.5}}},  # numbers coerced from strings
        {"host": {"cpu": {"cores": [2, 4]}}},  # a list wherever a value is
        {"host": None, "@timestamp": "2026-12-02T10:00:00.000Z"},  # null: no value
        {"@timestamp": 1764669600000},  # epoch milliseconds
    ],
)
def test_what_the_index_takes(data):
    assert check_document(HARDWARE, data) is None


def test_ip_fields_take_addresses_without_a_zone():
    assert check_document(NETWORKS, {"host": {"ip": ["10.0.0.5", "fe80::1"]}}) is None
    problem = check_document(NETWORKS, {"host": {"ip": ["fe80::1%eth0"]}})
    assert problem is not None and problem.field == "host.ip"
    assert check_document(NETWORKS, {"network": {"netmask": "not an ip"}}) is not None


def test_fim_has_no_timestamp():
    assert check_document(FIM, {"file": {"path": "/etc/hosts", "size": 3}}) is None
    problem = check_document(FIM, {"@timestamp": "2026-12-02T10:00:00Z", "file": {}})
    assert problem is not None and problem.error == STRICT


def test_the_commands_index_is_dynamic_but_typed():
    result = {"command": {"result": {"code": 0, "message": "ok"}}, "extra": {"any": 1}}
    assert check_document(COMMANDS, result) is None
    problem = check_document(COMMANDS, {"command": {"result": {"code": 70000}}})
    assert problem is not None and problem.field == "command.result.code"  # a short
    assert check_document(COMMANDS, {"command": {"action": {"args": {"a": {"b": 1}}}}}) is None


def test_an_unknown_mapping_still_refuses_what_the_splice_breaks():
    vulnerability = index_to_check("vulnerability", "anything")
    assert check_document(vulnerability, {"free": {"form": 1}}) is None
    assert check_document(vulnerability, {}) is not None
    assert check_document(vulnerability, {"agent": 1}) is not None
    assert index_to_check("inventory", "packages") is index_for("inventory", "packages")
