"""What a name may run: only a trusted file in the allowed directory (or a shipped program
enabled by name); every other case is refused with its reason."""

from __future__ import annotations

import os

import pytest

from active_response import programs
from active_response.programs import Refused, find
from tests.fixtures.other_user import needs_root


@pytest.fixture
def allowed(tmp_path):
    d = tmp_path / "allowed"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    return d


def script(path, mode=0o755):
    path.write_text("#!/bin/sh\necho ok\n")
    os.chmod(path, mode)
    return path


def refusal(name, directory, enabled=()):
    with pytest.raises(Refused) as exc:
        find(name, str(directory), enabled)
    return exc.value.reason, str(exc.value)


@pytest.mark.parametrize(
    "name", ["a/b", "../x", "..x", "x..y", "", ".hidden", "-rf", "a" * 65, "a b", 5]
)
def test_a_name_that_is_no_plain_name_is_refused(allowed, name):
    reason, message = refusal(name, allowed)
    assert reason == "bad_name" and message.startswith("not allowed: ")


def test_a_program_in_the_directory_runs_and_nothing_else(allowed, tmp_path):
    script(allowed / "ok")
    assert find("ok", str(allowed)).path == allowed / "ok"
    script(tmp_path / "outside")
    assert refusal("outside", allowed) == ("not_found", "not found: outside")
    # our shipped programs: enabled by a link, or by name in the configuration
    assert refusal("firewall-drop", allowed)[0] == "not_found"
    assert find("firewall-drop", str(allowed), ["firewall-drop"]).origin == "shipped"
    (allowed / "host-deny").symlink_to(programs.SHIPPED_DIR / "host-deny")
    assert find("host-deny", str(allowed)).path == programs.SHIPPED_DIR / "host-deny"


def test_loose_modes_are_refused(allowed, tmp_path):
    script(allowed / "ok")
    os.chmod(allowed, 0o777)
    assert "the programs directory is mode 0777" in refusal("ok", allowed)[1]
    os.chmod(allowed, 0o775)
    assert refusal("ok", allowed)[0] == "untrusted"
    os.chmod(allowed, 0o755)
    script(allowed / "ok", 0o757)
    assert "the program is mode 0757" in refusal("ok", allowed)[1]
    script(allowed / "ok", 0o644)
    assert refusal("ok", allowed) == ("not_allowed", "not allowed: ok is not executable")
    # a link to a file in a directory others may write
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    script(loose / "target")
    (allowed / "linked").symlink_to(loose / "target")
    assert "the program's directory is mode 0777" in refusal("linked", allowed)[1]


@needs_root
def test_files_of_another_user_are_refused(allowed):
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(script(allowed / "theirs"), nobody, -1)
    assert "the program is owned by uid" in refusal("theirs", allowed)[1]
    os.chown(allowed, nobody, -1)
    script(allowed / "ok")
    assert "the programs directory is owned by uid" in refusal("ok", allowed)[1]


def test_a_missing_directory_finds_nothing(tmp_path):
    assert refusal("x", tmp_path / "none")[0] == "not_found"
    assert refusal("x", "relative/dir")[0] == "untrusted"
