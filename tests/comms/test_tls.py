"""TLS verification modes against a real HTTPS server whose certificate names another host."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from comms.errors import TLSFailure
from comms.http import answer_cap, make_session, send, user_agent
from core.config import Config
from tests.comms.helpers import captured_logs


def get(config: Config, url: str, **kw: object) -> str:
    with make_session(config, **kw) as session:  # type: ignore[arg-type]
        cap = answer_cap(config)
        return send(session, "GET", url + "/", timeout=(5, 5), cap=cap, what="test").text


def test_full_checks_the_hostname(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "full", "ca_file": str(ca)}})
    with pytest.raises(
        TLSFailure,
        match="TLS check of https://127.0.0.1:[0-9]+ failed: .*(IP address mismatch|match)",
    ) as info:
        get(config, url)
    assert info.value.exit_code == 3


def test_certificate_checks_the_chain_not_the_hostname(
    make_config: Callable[..., Config], https_server
) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "certificate", "ca_file": str(ca)}})
    assert get(config, url) == user_agent()


def test_certificate_still_refuses_an_untrusted_chain(
    make_config: Callable[..., Config], https_server
) -> None:  # type: ignore[no-untyped-def]
    url, _ = https_server
    config = make_config({"agent": {"verification_mode": "certificate"}})  # system bundle
    with pytest.raises(TLSFailure, match="certificate"):
        get(config, url)


def test_none_checks_nothing_and_says_so(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, _ = https_server
    with captured_logs() as logs:
        assert get(make_config({"agent": {"verification_mode": "none"}}), url) == user_agent()
    assert any("TLS verification is OFF" in line for line in logs)


def test_mode_override_for_register(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "full"}})
    assert get(config, url, verification_mode="certificate", ca_file=str(ca)) == user_agent()
