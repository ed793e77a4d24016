"""Fault injection over real HTTP: statuses, Retry-After, windows, delays, drops, 413."""

from __future__ import annotations

import time

import pytest
import requests

from tests.fixtures.common import wait_for
from tests.refserver.helpers import enroll, error_of, stateless_pair

STATELESS = "/api/v1/events/stateless"


def test_status_for_n_requests_then_normal(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(status=503, count=2)
    statuses = [agent.post("stateless", stateless_pair()).status_code for _ in range(3)]
    assert statuses == [503, 503, 204]
    assert refserver.request_count(STATELESS, status=503) == 2
    assert refserver.request_count(STATELESS, status=204) == 1
    assert refserver.count_events() == 1  # faulted requests stored nothing
    assert refserver.faults() == []  # used up


def test_fault_body_is_the_error_shape_and_429_carries_retry_after(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(status=429, count=1, retry_after=7)
    r = agent.post("stateless", stateless_pair())
    assert error_of(r) == (429, "Injected fault", 429)
    assert r.headers["Retry-After"] == "7"


def test_fault_for_a_time_window(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(status=500, seconds=0.5)
    assert agent.post("stateless", stateless_pair()).status_code == 500
    wait_for(lambda: agent.post("stateless", stateless_pair()).status_code == 204, timeout=5)


def test_fault_limited_to_a_path_leaves_the_rest_alone(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(status=503, path="/api/v1/events/stateful")
    assert agent.post("stateless", stateless_pair()).status_code == 204
    assert (
        agent.post(
            "stateful", ['{"id":"d","module":"fim","collector":"f","operation":"delete"}']
        ).status_code
        == 503
    )
    refserver.clear_faults()
    assert (
        agent.post(
            "stateful", ['{"id":"d","module":"fim","collector":"f","operation":"delete"}']
        ).status_code
        == 200
    )


def test_faults_never_touch_the_admin_api(refserver) -> None:
    refserver.set_fault(status=500)
    assert refserver.agents() == []  # would raise on a 500
    r = requests.post(f"{refserver.url}/security/user/authenticate", auth=("wazuh", "wazuh"))
    assert r.status_code == 500


def test_delay_then_normal_answer(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(delay=0.6, count=1)
    started = time.monotonic()
    assert agent.post("stateless", stateless_pair()).status_code == 204
    assert time.monotonic() - started >= 0.6


def test_delay_then_status(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(delay=0.3, status=504, count=1)
    started = time.monotonic()
    assert agent.post("stateless", stateless_pair()).status_code == 504
    assert time.monotonic() - started >= 0.3


def test_drop_closes_the_connection_without_an_answer(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(drop=True, count=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            agent.post("stateless", stateless_pair())
    assert agent.post("stateless", stateless_pair()).status_code == 204
    assert refserver.request_count(STATELESS, status=0) == 2
    assert refserver.running


def test_max_body_answers_413_only_above_the_size(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(max_body=2000)
    assert agent.post("stateless", stateless_pair()).status_code == 204
    big = []
    for n in range(50):
        big += stateless_pair(n=n)
    r = agent.post("stateless", big)
    assert error_of(r) == (413, "Request Entity Too Large", 413)
    assert refserver.count_events() == 1


def test_bad_fault_options_are_refused(refserver) -> None:
    with pytest.raises(Exception, match="unknown fault option"):
        refserver.admin.set_fault(colour="red")
    with pytest.raises(Exception, match="needs status, drop or delay"):
        refserver.set_fault(count=3)


def test_request_log_counts_by_path_and_status(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.reset_stats()
    agent.post("stateless", stateless_pair())
    agent.post("stateless", ["{"])
    assert refserver.request_log() == [
        {"method": "POST", "path": STATELESS, "status": 204, "count": 1},
        {"method": "POST", "path": STATELESS, "status": 400, "count": 1},
    ]


def test_413_on_a_megabyte_body_is_readable_and_the_connection_reusable(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_fault(max_body=100_000)
    lines = []
    for n in range(10_000):
        lines += stateless_pair(n=n)
    session = requests.Session()
    body = "\n".join([agent.metadata(), *lines]).encode()
    assert len(body) > 1_000_000
    url = f"{agent.url}/api/v1/events/stateless"
    r = session.post(url, data=body, headers=agent.headers(), timeout=30)
    assert error_of(r) == (413, "Request Entity Too Large", 413)
    small = "\n".join([agent.metadata(), *stateless_pair()]).encode()
    assert session.post(url, data=small, headers=agent.headers(), timeout=30).status_code == 204


def test_fault_message_is_the_error_text_of_the_comms_api(refserver) -> None:
    agent = enroll(refserver.url)
    text = "Couldn't connect to the indexer: connection refused"
    rule = refserver.set_fault(status=403, count=1, path="/api/v1/authentication", message=text)
    assert rule["message"] == text
    r = requests.post(
        f"{refserver.url}/api/v1/authentication",
        json={"uuid": agent.id, "key": agent.key},
        timeout=10,
    )
    assert error_of(r) == (403, text, 403)
    assert refserver.faults() == []
    r = requests.post(
        f"{refserver.url}/api/v1/authentication",
        json={"uuid": agent.id, "key": agent.key},
        timeout=10,
    )
    assert r.status_code == 200


def test_fault_on_the_management_api_answers_in_its_shape(refserver) -> None:
    refserver.set_fault(status=500, count=1, path="/security/", message="indexer down")
    r = requests.post(
        f"{refserver.url}/security/user/authenticate", auth=("wazuh", "wazuh"), timeout=10
    )
    assert r.status_code == 500
    assert r.json() == {"title": "Internal Server Error", "detail": "indexer down"}


def test_fault_message_needs_a_status_and_must_be_text(refserver) -> None:
    with pytest.raises(Exception, match="message needs status"):
        refserver.set_fault(delay=0.1, message="x")
    with pytest.raises(Exception, match="message must be a string"):
        refserver.admin.set_fault(status=500, message=5)
