"""A running agent imports only what its services need (the whole agent idles in ≤ 60 MB).

A fresh interpreter loads every service of the registry (``spec.load()``) and the
supervisor, builds ``agentbus``'s parser, lists the subcommands and parses ``agentbus run``
and ``agentbus forwarder``, as the running agent does; then it reports ``sys.modules``.
Nothing of the reference server (FastAPI, uvicorn, ...) and nothing only enrollment or the
reading of a token needs (uuid6; pyjwt, and through it ``cryptography``: imported when a
token arrives) may be there. Once with the dev install as it is, once as a plain install (no ``[server]``
extra: the services must not need it).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from agent.main import HELP, SERVICES, SUBCOMMANDS

#: never imported by the services, the supervisor or the CLI's parsing of their subcommands
NOT_IMPORTED = (
    # the reference server and its [server] extra
    "refserver",
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "cryptography",
    # pyjwt: imported when a token arrives (comms/tokens.py), since any import of jwt
    # imports jwt.algorithms, which imports cryptography where installed
    "jwt",
    # enrollment only (agentbus register)
    "comms.enroll",
    # support archives only (agentbus diagnostics)
    "agent.cli.diagnostics",
    "agent.cli.scan",
    "uuid6",
    # the health endpoint's, imported only when it is switched on
    "prometheus_client",
    "http.server",
    # subcommands other than the services' and run's
    "agent.cli.register",
    "agent.cli.send",
    "agent.cli.status",
    "agent.cli.quarantine",
    "agent.cli.demo",
    "agent.demo",
)

#: what a plain install (``pip install agentbus``) lacks
SERVER_EXTRA = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "uvicorn",
    "anyio",
    "h11",
    "httpx",
    "cryptography",
    "cffi",
    "_cffi_backend",
)

PROBE = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # import fails, as if not installed
import agent.supervisor
from agent.main import build_parser
from core import registry
for spec in registry.SERVICES:
    spec.load()
before = set(sys.modules)
parser = build_parser()
parser.format_help()  # agentbus --help
listed = sorted(set(sys.modules) - before)
run = parser.parse_args(["run"])
forwarder = parser.parse_args(["forwarder"])
print(json.dumps({{
    "loaded": sorted(m for m, mod in sys.modules.items() if mod is not None),
    "listed": listed,
    "funcs": [run.func.__module__, forwarder.func.func.__module__],
}}))
"""


def _probe(blocked: tuple[str, ...]) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(blocked=blocked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(90)
@pytest.mark.parametrize("install", ["dev", "plain"])
def test_the_services_and_their_subcommands_import_nothing_they_do_not_use(install):
    probe = _probe(SERVER_EXTRA if install == "plain" else ())
    loaded = set(probe["loaded"])
    unwanted = [n for n in NOT_IMPORTED if any(m == n or m.startswith(n + ".") for m in loaded)]
    assert not unwanted, f"imported by the running agent, which does not use them: {unwanted}"
    # Listing the subcommands (agentbus --help) imports none of their modules (nor anything
    # the services did not import already); choosing one imports its module alone.
    assert probe["listed"] == []
    assert probe["funcs"] == ["agent.cli.run", "agent.cli.service"]


def test_the_listed_help_is_each_modules_own():
    # agent.main keeps a copy of each HELP so that listing them imports nothing.
    assert set(HELP) == set(SUBCOMMANDS) - {SERVICES}
    for name, text in HELP.items():
        assert text == importlib.import_module(SUBCOMMANDS[name]).HELP, name


@pytest.mark.timeout(60)
def test_server_on_a_plain_install_says_what_is_missing(tmp_path):
    # The subcommand is listed and parses; running it names the missing extra, exit 2.
    code = (
        "import sys\n"
        f"for name in {SERVER_EXTRA!r}:\n"
        "    sys.modules[name] = None\n"
        "from agent.main import main\n"
        f"sys.exit(main(['server', '--port', '0', '--data-dir', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "not installed" in done.stderr and "agentbus[server]" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing was started


def test_version_is_read_only_when_asked_for(capsys):
    from agent.main import build_parser
    from core.version import __version__

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"agentbus {__version__}\n"


def test_a_subcommand_whose_module_cannot_be_imported_says_so(monkeypatch, capsys):
    from agent import main

    monkeypatch.setitem(main.SUBCOMMANDS, "demo", "agentbus_no_such_module")
    args = main.build_parser().parse_args(["demo", "--keep"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "'demo' needs agentbus_no_such_module, which is not installed" in err
