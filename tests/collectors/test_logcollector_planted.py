"""A local user plants links, FIFOs and files of its own in a watched log directory.

The logcollector reads as root: a link it followed would ship any file of the host to the
server. Each attack is performed by the user ``nobody`` (a forked child that dropped its
privileges); none of what it planted reaches the server, each skip is counted by reason
and shown on the control socket (what ``agentbus status`` reads), and the root-owned logs
next to them are still read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bus.control import request
from collectors.logcollector.service import LogcollectorService
from collectors.logcollector.tail import NOT_REGULAR, SYMLINK, Skipped, open_watched
from tests.fixtures.common import wait_for
from tests.fixtures.other_user import needs_root, run_as_nobody

SECRET = "root:$6$SECRET-HASH-NEVER-SHIPPED:19000:0:99999:7:::"


#: only the files named here: not the host's journal nor its syslog files
FILES_ONLY = {"journald": "off", "syslog_paths": []}


def _plant(watched: str, secret: str, secret_dir: str) -> None:
    """What the hostile user does, as nobody, in a log directory it can write."""
    os.symlink(secret, f"{watched}/evil.log")  # a link to a file it cannot read
    os.symlink(secret_dir, f"{watched}/sub")  # a link to a directory of root's logs
    os.symlink(secret, f"{watched}/named.txt")  # a link where the config names a file
    os.mkfifo(f"{watched}/pipe.log")  # would block a reader that waits for a writer
    with open(f"{watched}/own.log", "w") as fh:  # its own file, with forged lines
        fh.write("forged: user root logged in\n")


def _plant_later(watched: str, secret: str) -> None:
    os.symlink(secret, f"{watched}/late.log")


def _skips(service: LogcollectorService) -> dict[str, Any]:
    answer = request(service.endpoints.control("logcollector"), {"cmd": "status"}, timeout=2)
    return dict(answer.get("files_skipped") or {})


def _originals(sink: Any) -> list[str]:
    return [d["event"]["original"] for d in sink.data()]


@needs_root
@pytest.mark.timeout(90)
def test_planted_links_fifos_and_foreign_files_are_skipped_and_counted(
    make_config, sink, run_service, open_dir: Path
):
    secret = open_dir / "shadow"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    secret_dir = open_dir / "private"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "app.log").write_text(SECRET + "\n")  # root's, behind the planted link
    watched = open_dir / "logs"
    watched.mkdir()
    watched.chmod(0o1777)  # like /tmp: every user may write there
    legit = watched / "app.log"
    legit.write_text("legit: root's own log line\n")
    real = open_dir / "real.log"
    real.write_text("via the admin's link\n")
    admin_link = open_dir / "current.log"
    admin_link.symlink_to(real)  # a link the admin made (root's) and named in paths

    run_as_nobody(_plant, str(watched), str(secret), str(secret_dir))

    paths = [str(admin_link), str(watched / "named.txt"), f"{watched}/*.log", f"{watched}/*/*.log"]
    config = make_config(
        {
            "collectors": {
                "logcollector": {
                    "paths": paths,
                    "read_from": "start",
                    "poll_interval": "50ms",
                    **FILES_ONLY,
                }
            }
        }
    )
    service = LogcollectorService(config)
    run_service(service)

    wait_for(
        lambda: {"legit: root's own log line", "via the admin's link"} <= set(_originals(sink))
    )
    wait_for(lambda: _skips(service) == {"symlink": 3, "owner": 1, "not_regular": 1})

    # A link planted while it runs is skipped too, and counted once, not at every poll.
    run_as_nobody(_plant_later, str(watched), str(secret))
    wait_for(lambda: _skips(service).get("symlink") == 4)
    (watched / "app.log").open("a").write("legit: second line\n")
    wait_for(lambda: "legit: second line" in _originals(sink))
    assert _skips(service) == {"symlink": 4, "owner": 1, "not_regular": 1}

    shipped = "\n".join(_originals(sink))
    assert "SECRET-HASH" not in shipped
    assert "forged" not in shipped
    paths_sent = {d["log"]["file"]["path"] for d in sink.data()}
    assert paths_sent == {str(legit), str(admin_link)}


@needs_root
def test_a_file_of_another_user_is_read_when_file_owners_names_it(
    make_config, sink, run_service, open_dir: Path
):
    watched = open_dir / "logs"
    watched.mkdir()
    watched.chmod(0o1777)
    run_as_nobody(_plant, str(watched), str(open_dir / "x"), str(open_dir))
    config = make_config(
        {
            "collectors": {
                "logcollector": {
                    "paths": [f"{watched}/own.log"],
                    "read_from": "start",
                    "poll_interval": "50ms",
                    "file_owners": ["nobody"],
                    **FILES_ONLY,
                }
            }
        }
    )
    run_service(LogcollectorService(config))
    wait_for(lambda: "forged: user root logged in" in _originals(sink))


def test_a_fifo_in_place_of_a_log_is_refused_without_blocking(tmp_path: Path):
    # What a file swapped for a FIFO between the look and the open meets: the open does not
    # wait for a writer, and the descriptor is refused.
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    with pytest.raises(Skipped) as caught:
        open_watched(str(fifo), {os.geteuid()})
    assert caught.value.reason == NOT_REGULAR


def test_a_link_is_refused_at_the_open_itself(tmp_path: Path):
    target = tmp_path / "target.log"
    target.write_text("x\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.log").symlink_to(target)
    (tmp_path / "dirlink").symlink_to(tmp_path / "dir")
    (tmp_path / "dir" / "inner.log").write_text("y\n")
    for path, base in (
        (tmp_path / "link.log", None),
        (tmp_path / "dirlink" / "inner.log", tmp_path),
    ):
        with pytest.raises(Skipped) as caught:
            open_watched(str(path), {os.geteuid()}, None if base is None else str(base))
        assert caught.value.reason == SYMLINK
    fd, _st = open_watched(str(tmp_path / "dir" / "inner.log"), {os.geteuid()}, str(tmp_path))
    os.close(fd)
