"""Credentials file: atomic, private, strict on load; which comms URL wins."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from comms.credentials import (
    Credentials,
    comms_url,
    credentials_path,
    load_credentials,
    save_credentials,
    update_groups,
)
from comms.errors import NotEnrolled
from comms.private_files import write_private

CREDS = Credentials(
    uuid="0190a6d2-0000-7000-8000-000000000001",
    key="A" * 32,
    name="host1",
    groups=("default",),
    server_url="https://server:27000",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_round_trip_and_private_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "data"
    save_credentials(data_dir, CREDS)
    assert load_credentials(data_dir) == CREDS
    assert mode(credentials_path(data_dir)) == 0o600
    assert mode(data_dir) == 0o700
    assert [p.name for p in data_dir.iterdir()] == ["credentials.json"]  # no temp file left


def test_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_credentials(tmp_path, CREDS)
    finally:
        os.umask(old)
    assert mode(credentials_path(tmp_path)) == 0o600


def test_replacing_keeps_the_old_file_until_the_new_one_is_complete(tmp_path: Path) -> None:
    save_credentials(tmp_path, CREDS)
    before = os.stat(credentials_path(tmp_path)).st_ino
    save_credentials(tmp_path, CREDS.with_groups(["g1"]))
    # a new inode renamed over the old one: readers see either file whole, never a mix
    assert os.stat(credentials_path(tmp_path)).st_ino != before
    assert load_credentials(tmp_path).groups == ("g1",)


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:

    with pytest.raises(TypeError):
        write_private(tmp_path / "x.json", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_file_says_how_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="agentbus register") as info:
        load_credentials(tmp_path)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"uuid": "u", "name": "n", "server_url": "s"}', b'{"uuid": "u", '
     b'"key": "k", "name": "n", "server_url": "s", "groups": "g"}'],
)  # fmt: skip
def test_damaged_file_is_not_enrolled_with_a_hint(tmp_path: Path, content: bytes) -> None:
    credentials_path(tmp_path).write_bytes(content)
    with pytest.raises(NotEnrolled, match="--force"):
        load_credentials(tmp_path)


def test_repr_never_shows_the_key() -> None:
    assert "A" * 32 not in repr(CREDS)
    assert "A" * 32 not in str(CREDS)


def test_update_groups(tmp_path: Path) -> None:
    save_credentials(tmp_path, CREDS)
    assert update_groups(tmp_path, ["a", "b"]).groups == ("a", "b")
    assert load_credentials(tmp_path).groups == ("a", "b")
    assert load_credentials(tmp_path).key == CREDS.key


def test_comms_url_enrolled_unless_configured(make_config) -> None:  # type: ignore[no-untyped-def]
    assert comms_url(make_config(), CREDS) == "https://server:27000"
    configured = make_config({"agent": {"server_url": "http://127.0.0.1:9/"}})
    assert comms_url(configured, CREDS) == "http://127.0.0.1:9"
