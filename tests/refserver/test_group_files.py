"""`agentbus server group-file`: a group's configuration file, checked as the agent checks it,
served at /api/v1/files; --show reads it back (admin token needed, like every admin call)."""

from __future__ import annotations

import requests

from tests.refserver.test_cli import agentbus, at

WEB = b"logcollector:\n  localfiles:\n    - location: /var/log/web.log\nsyscheck: {}\n"


def test_a_group_file_is_checked_served_and_shown(refserver) -> None:
    out = agentbus("group-file", *at(refserver), "web", "-", stdin=WEB)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "group web: web.yml served"
    # what the agent would ignore is said, and served all the same
    assert "section 'syscheck' ignored" in out.stderr
    assert (refserver.data_dir / "files" / "web.yml").read_bytes() == WEB
    out = agentbus("group-file", *at(refserver), "web", "--show")
    assert out.returncode == 0 and out.stdout == WEB.decode()


def test_a_file_agents_would_refuse_is_not_served_unless_asked(refserver) -> None:
    bad = b"agent:\n  server_url: https://elsewhere.example\n"
    out = agentbus("group-file", *at(refserver), "web", "-", stdin=bad)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("agentbus server: agents would refuse web.yml: agent:")
    assert not (refserver.data_dir / "files" / "web.yml").exists()
    # --no-check serves it anyway (to see what agents do with it)
    out = agentbus("group-file", *at(refserver), "web", "-", "--no-check", stdin=bad)
    assert out.returncode == 0
    assert (refserver.data_dir / "files" / "web.yml").read_bytes() == bad


def test_bad_group_names_and_missing_files(refserver) -> None:
    out = agentbus("group-file", *at(refserver), "../etc", "-", stdin=WEB)
    assert out.returncode == 2 and "not a valid group name" in out.stderr
    out = agentbus("group-file", *at(refserver), "ghost", "--show")
    assert out.returncode == 1 and "no file for group ghost" in out.stderr


def test_reading_a_served_file_needs_the_admin_token(refserver) -> None:
    refserver.put_file("web.yml", WEB)
    assert requests.get(f"{refserver.url}/admin/files/web.yml", timeout=5).status_code == 401
