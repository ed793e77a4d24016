"""The sca collector end to end: policies evaluated, their documents through the real
forwarder to the reference server's strict ``sca`` index, and only changes sent again."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import pytest

from bus.indices import check_document, index_for
from collectors import metrics as km
from collectors.sca.service import ScaService
from tests.fixtures.collectors import write_credentials
from tests.fixtures.common import wait_for

ONCE = argparse.Namespace(once=True)

POLICY = """\
policy:
  id: "e2e"
  name: "End to end"
  description: "Checks of files the test controls"
  references: ["https://example.org/e2e"]
requirements:
  title: "the marker exists"
  condition: all
  rules: ["f:{root}/marker"]
checks:
  - id: 1
    name: "Debug is off"
    description: "debug = off in app.conf"
    rationale: "Debug output leaks secrets"
    remediation: "Set debug = off"
    compliance:
      pci_dss: ["2.2.4"]
      cis: ["1.1"]
    mitre:
      tactic: {{id: ["TA0006"], name: ["Credential Access"]}}
    references: ["https://example.org/1"]
    condition: all
    rules: ['f:{root}/app.conf -> r:^debug = off$']
  - id: 2
    title: "Port is numeric and small"
    condition: all
    rules: ['f:{root}/app.conf -> n:^port = (\\d+)$ compare < 1024']
  - id: 3
    title: "Missing file"
    condition: any
    rules: ['f:{root}/absent.conf -> r:x']
  - id: 4
    title: "Uses a command"
    condition: none
    rules: ['c:cat {root}/app.conf -> r:^insecure']
"""


def _run(run_service: Any, config: Any, sink: Any) -> dict[str, dict[str, Any]]:
    """One assessment; its events by document id."""
    before = len(sink.snapshot())
    svc = run_service(ScaService(config, ONCE))
    assert svc.join(60) == 0
    sent = svc.service.metrics.get(km.EVENTS_SENT)
    wait_for(lambda: len(sink.snapshot()) >= before + sent)
    out: dict[str, dict[str, Any]] = {}
    for ev in sink.snapshot()[before:]:
        assert (ev["module"], ev["collector"], ev["type"]) == ("sca", "check", "stateful")
        out[ev["id"]] = ev
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    root.mkdir()
    root.chmod(0o700)  # whatever the umask an earlier service left: the policy's dir is trusted
    (root / "marker").write_text("")
    (root / "app.conf").write_text("debug = off\nport = 80\n")
    return root


def _policy(root: Path, text: str = POLICY) -> Path:
    path = root / "e2e.yml"
    path.write_text(text.format(root=root))
    path.chmod(0o600)
    return path


def _config(make_config: Any, policy: Path) -> Any:
    return make_config(
        {
            "collectors": {
                "sca": {"builtin_policies": False, "policy_dirs": [], "policies": [str(policy)]}
            }
        }
    )


@pytest.mark.timeout(120)
def test_documents_reach_the_strict_index_and_only_changes_are_sent_again(
    make_config, sink, run_service, root
):
    config = _config(make_config, _policy(root))
    uuid = write_credentials(config)
    ids = {n: hashlib.sha1(f"{uuid}:e2e:{n}".encode()).hexdigest() for n in "1234"}

    first = _run(run_service, config, sink)
    assert set(first) == set(ids.values())
    assert {e["operation"] for e in first.values()} == {"create"}
    one = first[ids["1"]]["data"]
    assert one["check"] == {
        "id": "1",
        "name": "Debug is off",
        "description": "debug = off in app.conf",
        "rationale": "Debug output leaks secrets",
        "remediation": "Set debug = off",
        "compliance": ["pci_dss:2.2.4"],
        "references": ["https://example.org/1"],
        "condition": "all",
        "rules": [f"f:{root}/app.conf -> r:^debug = off$"],
        "result": "passed",
    }
    assert one["policy"] == {
        "id": "e2e",
        "name": "End to end",
        "file": "e2e.yml",
        "description": "Checks of files the test controls",
        "references": ["https://example.org/e2e"],
    }
    assert one["@timestamp"].endswith("Z")
    missing = first[ids["3"]]["data"]["check"]
    assert missing["result"] == "not applicable"
    assert missing["reason"] == f"file missing: {root}/absent.conf"
    assert first[ids["4"]]["data"]["check"]["result"] == "passed"
    # The server stored every one in its strict sca index; none was refused.
    sca = index_for("sca", None)
    assert sca is not None
    docs = sink.server.documents("wazuh-states-sca")
    assert len(docs) == 4
    for doc in docs:
        assert check_document(sca, doc["data"]) is None
    assert sink.server.documents_refused() == 0

    # Nothing changed: nothing sent.
    assert _run(run_service, config, sink) == {}

    # One check's state changes: exactly one update, the others untouched.
    (root / "app.conf").write_text("debug = on\nport = 80\n")
    second = _run(run_service, config, sink)
    assert list(second) == [ids["1"]]
    assert second[ids["1"]]["operation"] == "update"
    assert second[ids["1"]]["data"]["check"]["result"] == "failed"

    # A check removed from the policy: one delete.
    text = POLICY.replace(POLICY[POLICY.index("  - id: 4") :], "")
    _policy(root, text)
    third = _run(run_service, config, sink)
    assert list(third) == [ids["4"]]
    assert third[ids["4"]]["operation"] == "delete" and "data" not in third[ids["4"]]
    assert sink.server.documents_refused() == 0


@pytest.mark.timeout(120)
def test_refused_policies_keep_their_documents_and_unmet_requirements_delete_them(
    make_config, sink, run_service, root
):
    policy = _policy(root)
    config = _config(make_config, policy)
    write_credentials(config)
    assert len(_run(run_service, config, sink)) == 4

    # Made writable by others: refused (counted), its documents stay as they were.
    policy.chmod(0o666)
    svc = run_service(ScaService(config, ONCE))
    assert svc.join(60) == 0
    assert svc.service.metrics.get(km.POLICIES_SKIPPED, reason="refused") == 1
    assert svc.service.metrics.get(km.EVENTS_SENT) == 0
    policy.chmod(0o600)

    # The requirements no longer hold here: the policy does not apply, its checks go.
    (root / "marker").unlink()
    gone = _run(run_service, config, sink)
    assert len(gone) == 4 and {e["operation"] for e in gone.values()} == {"delete"}
    assert sink.server.documents("wazuh-states-sca") == []


@pytest.mark.timeout(120)
def test_the_builtin_policy_reaches_the_strict_server(make_config, start_pipeline, run_service):
    # The forwarder's own check off: the server judges every document of our real policy.
    sink = start_pipeline(check_documents=False)
    config = make_config({"collectors": {"sca": {"policy_dirs": []}}})
    write_credentials(config)
    svc = run_service(ScaService(config, ONCE))
    assert svc.join(60) == 0
    metrics = svc.service.metrics
    sent = metrics.get(km.EVENTS_SENT)
    assert metrics.get(km.EVENTS_REJECTED) == 0
    assert metrics.get(km.POLICIES) == 1 and 10 <= sent <= 20
    wait_for(lambda: len(sink.server.documents("wazuh-states-sca")) == sent)
    assert sink.server.documents_refused() == 0
    results = {d["data"]["check"]["result"] for d in sink.server.documents("wazuh-states-sca")}
    assert results <= {"passed", "failed", "not applicable"}
