"""Helpers of the reference server tests: enroll an agent, build bodies, call the APIs."""

from __future__ import annotations

import json
import secrets
import string
import uuid
from dataclasses import dataclass
from typing import Any

import requests

ALPHABET = string.ascii_letters + string.digits


def new_key() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(32))


def enrollment_body(agent_id: str | None = None, key: str | None = None, **over: Any) -> dict:
    body: dict[str, Any] = {
        "id": agent_id or str(uuid.uuid4()),
        "name": "h1",
        "key": key or new_key(),
        "type": "Endpoint",
        "version": "0.1.0",
        "host": {
            "hostname": "h1",
            "architecture": "x86_64",
            "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"},
            "ip": ["10.0.0.5", "fe80::1"],
        },
    }
    body.update(over)
    return body


def management_token(url: str, user: str = "wazuh", password: str = "wazuh") -> str:
    r = requests.post(f"{url}/security/user/authenticate", auth=(user, password), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["token"])


@dataclass
class Agent:
    url: str
    id: str
    key: str
    token: str
    groups: tuple[str, ...] = ("default",)

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "User-Agent": "agentbus/0.1.0 (Endpoint; x86_64; Linux)",
            **extra,
        }

    def metadata(self) -> str:
        return agent_line(self.id, list(self.groups))

    def post(self, kind: str, lines: list[str], **kwargs: Any) -> requests.Response:
        body = "\n".join([self.metadata(), *lines])
        return requests.post(
            f"{self.url}/api/v1/events/{kind}",
            data=body.encode(),
            headers=self.headers(),
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    def poll(self, timeout: float = 30) -> requests.Response:
        return requests.get(f"{self.url}/api/v1/commands", headers=self.headers(), timeout=timeout)


def agent_line(agent_id: str, groups: list[str]) -> str:
    return dumps(
        {
            "agent": {
                "groups": groups,
                "host": {
                    "architecture": "x86_64",
                    "hostname": "h1",
                    "ip": ["10.0.0.5"],
                    "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"},
                },
                "id": agent_id,
                "name": "h1",
                "type": "Endpoint",
                "version": "0.1.0",
            }
        }
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def enroll(url: str, groups: tuple[str, ...] = ("default",)) -> Agent:
    """Enroll a new agent and authenticate it."""
    body = enrollment_body()
    token = management_token(url)
    r = requests.post(
        f"{url}/agents", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert r.status_code == 201, r.text
    r = requests.post(
        f"{url}/api/v1/authentication", json={"uuid": body["id"], "key": body["key"]}, timeout=10
    )
    assert r.status_code == 200, r.text
    return Agent(url, body["id"], body["key"], r.json()["token"], groups)


def stateless_pair(module: str = "logcollector", collector: str = "file", n: int = 0) -> list[str]:
    return [
        dumps({"module": module, "collector": collector}),
        dumps({"event": {"original": f"line {n}"}, "log": {"file": {"path": "/var/log/syslog"}}}),
    ]


def stateful_header(doc_id: str, module: str, collector: str | None, operation: str) -> str:
    head: dict[str, str] = {"id": doc_id, "module": module}
    if collector is not None:
        head["collector"] = collector
    head["operation"] = operation
    return dumps(head)


def error_of(response: requests.Response) -> tuple[int, str, int]:
    """(status, message, code) of an error answer; checks the body has exactly that shape."""
    body = response.json()
    assert set(body) == {"message", "code"}, body
    assert isinstance(body["message"], str) and isinstance(body["code"], int)
    return response.status_code, body["message"], body["code"]


def problem_of(response: requests.Response) -> tuple[int, str, str]:
    """(status, title, detail) of a management API error; checks the body has that shape."""
    body = response.json()
    assert set(body) in ({"title", "detail"}, {"title", "detail", "error"}), body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    return response.status_code, body["title"], body["detail"]


#: a document each stateful index accepts (its mapping is strict), by (module, collector)
VALID_DATA: dict[tuple[str, str | None], dict[str, Any]] = {
    ("fim", None): {"file": {"path": "/etc/hosts", "size": 12}},
    ("inventory", "hardware"): {"host": {"cpu": {"cores": 4}}},
    ("inventory", "hotfixes"): {"package": {"hotfix": {"name": "KB500"}}},
    ("inventory", "networks"): {"interface": {"mtu": 1500}},
    ("inventory", "packages"): {"package": {"name": "bash", "version": "5.2"}},
    ("inventory", "ports"): {"source": {"port": 22}},
    ("inventory", "processes"): {"process": {"pid": 1, "name": "init"}},
    ("inventory", "system"): {"host": {"hostname": "h1"}},
    ("sca", None): {"check": {"id": "1", "result": "passed"}},
    ("vulnerability", None): {"vulnerability": {"id": "CVE-2024-0001"}},
}


def valid_data(module: str, collector: str | None = None) -> str:
    """A data line the index of ``module`` (and inventory ``collector``) accepts."""
    return dumps(VALID_DATA[(module, collector if module == "inventory" else None)])
