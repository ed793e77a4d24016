"""A small client of the admin API, used by ``agentbus server <action>`` and the test fixture.

Every call carries the admin token (``token``, or read from ``token_file``; see
refserver.admintoken); without it the server answers 401.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from refserver.admintoken import read_token
from refserver.options import DEFAULT_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


class AdminError(Exception):
    """The admin API answered an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    """Calls ``<url>/admin/...``; ``verify`` as in requests (False for a self-signed server)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        verify: bool | str = True,
        timeout: float = 10.0,
        token: str | None = None,
        token_file: Path | str | None = None,
    ):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.verify = verify
        self.timeout = timeout
        if token is None and token_file is not None:
            token = read_token(Path(token_file))
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        # verify per request: requests lets $REQUESTS_CA_BUNDLE override session.verify.
        response = self.session.request(
            method,
            f"{self.url}/admin{path}",
            timeout=self.timeout,
            verify=self.session.verify,
            **kwargs,
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise AdminError(response.status_code, message)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- reads ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))

    def agents(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/agents"))

    def events(
        self,
        module: str | None = None,
        agent: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        after: int = 0,
    ) -> list[dict[str, Any]]:
        params = _params(module=module, agent=agent, type=type, limit=limit, after=after or None)
        return list(self._call("GET", "/events", params=params))

    def count_events(
        self, module: str | None = None, agent: str | None = None, type: str | None = None
    ) -> int:
        params = _params(module=module, agent=agent, type=type)
        return int(self._call("GET", "/events/count", params=params)["count"])

    def documents(self, index: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/documents", params=_params(index=index)))

    def commands(self, agent: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/commands", params=_params(agent=agent)))

    def results(self, document_id: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/results", params=_params(document_id=document_id)))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats"))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults"))

    # -- actions ----------------------------------------------------------------------------
    def queue_command(
        self,
        *,
        name: str,
        agent_id: str | None = None,
        group: str | None = None,
        args: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> list[str]:
        body = _params(agent_id=agent_id, group=group, name=name, args=args, timeout=timeout)
        return list(self._call("POST", "/commands", json=body)["document_ids"])

    def resend(self, document_id: str) -> None:
        self._call("POST", f"/commands/{document_id}/resend")

    def set_fault(self, **rule: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/faults", json=_params(**rule)))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def revoke_tokens(self) -> None:
        self._call("POST", "/revoke-tokens")

    def get_file(self, name: str) -> bytes | None:
        """A served file's content; None if there is none."""
        response = self.session.get(
            f"{self.url}/admin/files/{name}", timeout=self.timeout, verify=self.session.verify
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise AdminError(response.status_code, response.text)
        return response.content

    def put_file(self, name: str, content: bytes) -> None:
        self._call("PUT", f"/files/{name}", data=content)

    def set_clock_skew(self, seconds: float) -> None:
        self._call("POST", "/clock", json={"skew": seconds})

    def set_command_hold(self, seconds: float) -> None:
        self._call("POST", "/command-hold", json={"seconds": seconds})

    def reset_stats(self) -> None:
        self._call("DELETE", "/stats")


def _params(**values: Any) -> dict[str, Any]:
    """Drop the unset (None/False) values."""
    return {k: v for k, v in values.items() if v is not None and v is not False}
