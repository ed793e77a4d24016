"""bus.results.ResultCode: one enum of the protocol's result codes, plain ints on the wire."""

from __future__ import annotations

import json

import msgpack
import pytest

from bus import ResultCode
from bus.executor import _normalise


def test_the_codes_of_the_protocol() -> None:
    assert [(c.name, int(c)) for c in ResultCode] == [
        ("SUCCESS", 0),
        ("FAILURE", 1),
        ("IN_PROGRESS", 2),
        ("TIMEOUT", 3),
        ("UNKNOWN", 4),
    ]
    assert ResultCode.IN_PROGRESS.label == "in progress"


def test_wire_values_stay_plain_ints() -> None:
    assert msgpack.unpackb(msgpack.packb({"code": ResultCode.TIMEOUT})) == {"code": 3}
    assert json.dumps({"code": ResultCode.FAILURE}) == '{"code": 1}'
    assert f"executed_code_{ResultCode.FAILURE}" == "executed_code_1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, ResultCode.SUCCESS), (4, ResultCode.UNKNOWN), (ResultCode.TIMEOUT, ResultCode.TIMEOUT)],
)
def test_of_accepts_the_five_integers(value: object, expected: ResultCode) -> None:
    assert ResultCode.of(value) is expected


@pytest.mark.parametrize("value", [5, -1, True, False, "0", 1.0, None])
def test_of_refuses_anything_else(value: object) -> None:
    assert ResultCode.of(value) is None


def test_a_handler_may_return_plain_ints_or_the_enum() -> None:
    assert _normalise((2, "busy")) == (ResultCode.IN_PROGRESS, "busy")
    assert _normalise((ResultCode.SUCCESS, "done")) == (0, "done")
    assert _normalise("ok") == (ResultCode.SUCCESS, "ok")
    assert _normalise((7, "x"))[0] is ResultCode.FAILURE
    assert _normalise((True, "x"))[0] is ResultCode.FAILURE
