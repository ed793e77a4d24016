"""`agentbus diagnostics`: one archive for support, with no secret in it.

    agentbus diagnostics [--output FILE] [--lines N] [--config FILE]

Writes a gzip'd tar (mode 0600) holding, under one ``agentbus-diagnostics-<time>/`` folder:

- ``summary.txt``: what is in the archive, what could not be collected and why;
- ``version.json``: agentbus's version, Python, the OS (``uname``, ``/etc/os-release``);
- ``config.json``: the effective configuration with each value's origin (as ``agentbus
  config show --json --origin``), every secret replaced by ``[REDACTED]``;
- ``status.json``: ``agentbus status --json`` (every service's state and counters);
- ``queues.json``: the forwarder's queue and quarantine sizes (its counters, and the sizes
  of the files in ``<data_dir>/queue``);
- ``errors.json``: recent errors each service reports (``last_error``, ``auth``, ...);
- ``logs/<service>.log``: the last N log lines of each running service, read from the ring
  each one keeps in memory (core/logs.py) over its status socket (the ``logs`` command);
- ``run-dir.txt``, ``data-dir.txt``: ``ls -l`` of the run dir (the bus sockets' modes and
  owners) and of the data dir: names, modes, owners and sizes, never contents.

No secret goes in: keys whose name says secret (``password``, ``token``, ``secret``,
``key`` but not a file or dir path) and the password of a URL are redacted, and then every
text written is scrubbed of the secrets this host has: the agent key (credentials.json),
the cached token (token.json), the bus's CURVE secret key and any JWT.
It works whether the agent runs or not (then the services' parts say they were down).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import stat
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

HELP = "write one archive for support: versions, redacted config, status, logs (no secrets)"

#: log lines asked of each service by default
DEFAULT_LINES = 200
#: what replaces a secret
REDACTED = "[REDACTED]"
#: configuration keys whose values are secrets: by the last part of their name
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|credential|(^|_)key)s?$", re.I)
#: ... unless the key names where a secret is kept (a path is no secret)
_PATH_NAME = re.compile(r"_(file|files|dir|path)$", re.I)
#: userinfo of a URL: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@", re.I)
#: a JSON Web Token, wherever it appears
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
#: shortest string treated as a secret to scrub (shorter ones would match ordinary text)
MIN_SECRET = 8
#: seconds each service has to answer
CONTROL_TIMEOUT = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        "agentbus diagnostics               # ./agentbus-diagnostics-<host>-<time>.tar.gz",
        "agentbus diagnostics --output /tmp/support.tar.gz --lines 500",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="the archive to write (default: agentbus-diagnostics-<host>-<time>.tar.gz here)",
    )
    parser.add_argument(
        "--lines",
        type=int,
        default=DEFAULT_LINES,
        metavar="N",
        help=f"last log lines of each service (default {DEFAULT_LINES}; at most 500)",
    )


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import config_of

    if args.lines < 0:
        print("agentbus diagnostics: --lines must be 0 or more", file=sys.stderr)
        return 2
    config = config_of(args)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", platform.node() or "host")
    output = Path(args.output or f"agentbus-diagnostics-{host}-{stamp}.tar.gz")
    files, problems = collect(config, args.lines)
    secrets = known_secrets(config)
    write_archive(output, f"agentbus-diagnostics-{stamp}", files, problems, secrets)
    print(f"wrote {output} ({output.stat().st_size} bytes, mode 0600): send it to support")
    for problem in problems:
        print(f"agentbus diagnostics: note: {problem}", file=sys.stderr)
    return 0


def collect(config: Any, lines: int) -> tuple[dict[str, str], list[str]]:
    """Every file of the archive (name → text) and what could not be collected."""
    from agent.status import collect_status, services_asked

    problems: list[str] = []
    files: dict[str, str] = {"version.json": _json(versions())}
    files["config.json"] = _json(redacted_config(config))
    report = collect_status(config, timeout=CONTROL_TIMEOUT)
    files["status.json"] = _json(report)
    if not report["summary"]["running"]:
        problems.append("the agent is not running: no status, no logs from the services")
    files["queues.json"] = _json(queues(config, report))
    files["errors.json"] = _json(recent_errors(report))
    for name in services_asked(config):
        if not report["services"][name]["up"]:
            continue
        text, problem = service_logs(config, name, lines)
        if problem:
            problems.append(problem)
        else:
            files[f"logs/{name}.log"] = text
    files["run-dir.txt"] = listing(Path(config.agent.run_dir))
    files["data-dir.txt"] = listing(Path(config.agent.data_dir), depth=2)
    return files, problems


def versions() -> dict[str, Any]:
    from core.version import __version__

    uname = platform.uname()
    return {
        "agentbus": __version__,
        "python": sys.version,
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "os": {"system": uname.system, "release": uname.release, "version": uname.version},
        "machine": uname.machine,
        "os_release": _os_release(),
        "uid": os.getuid(),
        "time": time.time(),
    }


def _os_release() -> dict[str, str]:
    try:
        return dict(platform.freedesktop_os_release())
    except OSError:
        return {}


def redacted_config(config: Any) -> dict[str, Any]:
    """What ``agentbus config show --json --origin`` prints, secrets redacted."""
    from core.config import flatten

    values = {k: redact_value(k, v) for k, v in flatten(config).items()}
    return {
        "config_file": config.source,
        "groups": list(config.groups),
        "groups_applied_at": config.groups_applied_at,
        "groups_skipped": dict(config.groups_skipped),
        "values": values,
        "origins": {k: config.origins.get(k, "default") for k in values},
    }


def redact_value(key: str, value: Any) -> Any:
    """``value`` of configuration key ``key`` with its secrets replaced."""
    name = key.rsplit(".", 1)[-1]
    if _SECRET_NAME.search(name) and not _PATH_NAME.search(name) and value not in ("", None):
        return REDACTED
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", value)
    if isinstance(value, list):
        return [redact_value(key, v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(f"{key}.{k}", v) for k, v in value.items()}
    return value


def queues(config: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The forwarder's queue and quarantine figures, and its queue files' sizes."""
    counters = report["services"].get("forwarder", {}).get("counters", {})
    figures = {k: v for k, v in counters.items() if k.startswith(("queue", "quarantine"))}
    queue_dir = Path(config.agent.data_dir) / "queue"
    sizes: dict[str, Any] = {}
    try:
        for path in sorted(queue_dir.iterdir()):
            if path.is_file():
                sizes[path.name] = path.stat().st_size
    except OSError as exc:
        sizes = {"error": exc.strerror or str(exc)}
    return {"forwarder": figures, "files": sizes, "queue_dir": str(queue_dir)}


def recent_errors(report: dict[str, Any]) -> dict[str, Any]:
    """Each service's reported errors: the server's and the disk's (``last_error``,
    ``write_error``, ``auth``, ``error`` of a service that did not answer)."""
    out: dict[str, Any] = {}
    for name, service in report["services"].items():
        counters = service.get("counters", {})
        found = {k: v for k, v in counters.items() if (k == "auth" or "error" in k) and v}
        queues = counters.get("queues")
        for queue, figures in queues.items() if isinstance(queues, dict) else []:
            errors = {k: v for k, v in figures.items() if "error" in k and v}
            if errors:
                found.setdefault("queues", {})[queue] = errors
        if service.get("error"):
            found["not_answering"] = service["error"]
        if found:
            out[name] = found
    return out


def service_logs(config: Any, name: str, lines: int) -> tuple[str, str | None]:
    """(the service's last log lines, None) or ("", why they could not be read)."""
    from bus.control import request
    from bus.errors import BusError
    from core.service import endpoints_from_config

    endpoint = endpoints_from_config(config).control(name)
    try:
        answer = request(endpoint, {"cmd": "logs", "lines": lines}, timeout=CONTROL_TIMEOUT)
    except BusError as exc:
        return "", f"{name}: no logs: {exc}"
    if not answer.get("ok"):
        return "", f"{name}: no logs: {answer.get('error')}"
    got = [str(line) for line in answer.get("lines") or []]
    return "".join(f"{line}\n" for line in got), None


def listing(directory: Path, *, depth: int = 1) -> str:
    """``ls -l`` of ``directory`` (and its subdirectories to ``depth``): modes, owners, sizes."""
    out = [f"# {directory}"]

    def walk(d: Path, level: int) -> None:
        try:
            entries = sorted(d.iterdir())
        except OSError as exc:
            out.append(f"{d}: {exc.strerror or exc}")
            return
        for path in entries:
            try:
                st = path.lstat()
            except OSError:
                continue
            line = (
                f"{stat.filemode(st.st_mode)} {_user(st.st_uid):<10} {_group(st.st_gid):<10}"
                f" {st.st_size:>12} {time.strftime('%Y-%m-%d %H:%M', time.localtime(st.st_mtime))}"
                f" {path.relative_to(directory)}"
            )
            out.append(line)
            if stat.S_ISDIR(st.st_mode) and level < depth:
                walk(path, level + 1)

    walk(directory, 1)
    return "\n".join(out) + "\n"


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def known_secrets(config: Any) -> list[str]:
    """The secrets this host holds, to scrub wherever they appear: the agent key, the cached
    token, the bus's CURVE secret key; longest first."""
    data_dir = Path(config.agent.data_dir)
    found: set[str] = set()
    for name, fields in (("credentials.json", ("key",)), ("token.json", ("token",))):
        try:
            doc = json.loads((data_dir / name).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            found.update(str(doc[f]) for f in fields if doc.get(f))
    key_file = config.bus.curve_secret_key_file
    if key_file:
        try:
            text = Path(key_file).read_text(errors="replace")
        except OSError:
            text = ""
        # the z85 keys in it (40 characters), whatever the file's layout
        found.update(re.findall(r"[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}", text))
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every known secret, URL password and JWT replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)
    return _JWT.sub(REDACTED, text)


def write_archive(
    output: Path, folder: str, files: dict[str, str], problems: list[str], secrets: list[str]
) -> None:
    """Write ``files`` (scrubbed) and a summary into ``output``: 0600, atomically."""
    summary = [f"agentbus diagnostics, {time.strftime('%Y-%m-%d %H:%M:%S %z')}", "", "files:"]
    summary += [f"  {name}" for name in sorted(files)]
    summary += ["", "not collected:"] + [f"  {p}" for p in problems or ["(nothing missing)"]]
    everything = {"summary.txt": "\n".join(summary) + "\n", **files}
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            now = time.time()
            for name, text in everything.items():
                data = scrub(text, secrets).encode()
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o600, int(now)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, sort_keys=False) + "\n"
