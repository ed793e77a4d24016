"""SCA: time, CPU and peak memory of one assessment of a policy.

    python -m bench.sca [--policy FILE]... [--repeat 3] [--checks 200]

Cases: (a) the baseline policy shipped with agentbus; (b) a generated policy of
``--checks`` checks (files, /proc, directories and a few distinct commands, written to a
temp dir); (c) each ``--policy FILE`` given (a benchmark policy of your choice, e.g. a CIS
one: nothing here depends on it). Each assessment runs in a fresh child process (the
assessment as ``agentbus sca run`` does it: load and validate the file, then evaluate
every check) and reports: wall time of loading and of the whole assessment, CPU user+sys
of the assessing process and of the commands it ran (reaped children), and the peak RSS
of the assessing process (VmHWM: the interpreter and imports included; the figure before
the assessment is printed next to it). Median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import describe

BASELINE = Path(__file__).resolve().parent.parent / "collectors/sca/policies"
BASELINE_FILE = BASELINE / "agentbus_linux_baseline.yml"

#: the commands of the generated policy: each one runs once per assessment, however many
#: checks read it (as in benchmark policies, which ask sshd -T or stat many questions)
_COMMANDS = (
    'stat -L -c "%a %U %G" /etc/passwd',
    'stat -L -c "%a %U %G" /etc/group',
    "id -u",
    "uname -s",
    "getent passwd root",
)
_PROC = (
    "/proc/sys/kernel/randomize_va_space",
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/fs/protected_symlinks",
    "/proc/sys/kernel/ostype",
    "/proc/sys/kernel/pid_max",
    "/proc/sys/fs/file-max",
)
_FILES = ("/etc/passwd", "/etc/group", "/etc/os-release", "/etc/hosts", "/etc/login.defs")
_DIRS = ("/etc/default", "/etc/security", "/etc/apt", "/etc/systemd")


def generated_policy(checks: int) -> str:
    """A policy of ``checks`` checks: a quarter each of files, /proc, directories and
    commands, in the current format."""
    out = [
        "policy:",
        '  id: "bench_generated"',
        '  name: "Generated benchmark policy"',
        '  description: "Files, /proc, directories and a few commands."',
        "checks:",
    ]
    for i in range(checks):
        kind = i % 4
        if kind == 0:
            path = _FILES[i // 4 % len(_FILES)]
            rule = f"f:{path} -> !r:^# && r:^[\\w@.-]+[:=]\\s*\\S"
        elif kind == 1:
            path = _PROC[i // 4 % len(_PROC)]
            rule = f"f:{path} -> n:^(\\d+) compare >= {i % 3}"
            if path.endswith("ostype"):
                rule = f"f:{path} -> r:^Linux$"
        elif kind == 2:
            d = _DIRS[i // 4 % len(_DIRS)]
            rule = f"d:{d} -> r:\\.conf$ -> r:^\\s*[A-Za-z_]+\\s*=\\s*{i % 10}"
        else:
            rule = f"c:{_COMMANDS[i // 4 % len(_COMMANDS)]} -> r:^[0-9a-z]+ |^Linux|^{i % 7}"
        out += [
            f"  - id: {100000 + i}",
            f'    name: "generated check {i}"',
            "    compliance:",
            f'      nist_800_53: ["CM-{i % 9 + 1}"]',
            f"    condition: {('all', 'any', 'none')[i % 3]}",
            "    rules:",
            f"      - '{rule}'",
        ]
    return "\n".join(out) + "\n"


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def one(path: str) -> dict[str, Any]:
    """In the child: one assessment of ``path``, measured."""
    from collectors.sca.evaluate import Evaluator
    from collectors.sca.policy import load_policy
    from collectors.sca.settings import ScaSettings

    settings = ScaSettings(builtin_policies=False, policy_dirs=[])
    rss_before = _hwm_mb()
    cpu0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    policy = load_policy(path, settings)
    t1 = time.perf_counter()
    evaluator = Evaluator(settings)
    result = evaluator.policy(policy)
    t2 = time.perf_counter()
    return {
        "checks": len(policy.checks),
        "applicable": result.applicable,
        "passed": result.count("passed"),
        "failed": result.count("failed"),
        "not_applicable": result.count("not applicable"),
        "commands": len(evaluator._outputs),
        "load_s": t1 - t0,
        "wall_s": t2 - t0,
        "cpu_s": _cpu(resource.RUSAGE_SELF) - cpu0,
        "cpu_children_s": _cpu(resource.RUSAGE_CHILDREN) - kids0,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _hwm_mb(),
    }


def measure(path: str, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-m", "bench.sca", "--one", path],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"assessment of {path} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout))
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "applicable"}
    median["applicable"] = runs[0]["applicable"]
    return median


def show(name: str, r: dict[str, Any]) -> str:
    cpu = r["cpu_s"] + r["cpu_children_s"]
    return (
        f"{name}: {int(r['checks'])} checks ({int(r['passed'])} passed, {int(r['failed'])}"
        f" failed, {int(r['not_applicable'])} n/a; {int(r['commands'])} distinct commands)"
        f" | load {r['load_s'] * 1000:.0f} ms | assessment {r['wall_s'] * 1000:.0f} ms wall"
        f" | CPU {cpu * 1000:.0f} ms (agent {r['cpu_s'] * 1000:.0f} + commands"
        f" {r['cpu_children_s'] * 1000:.0f}) | peak RSS {r['peak_rss_mb']:.1f} MB"
        f" ({r['rss_before_mb']:.1f} before)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", action="append", default=[], metavar="FILE")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--one", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    print(describe())
    tmp = Path(tempfile.mkdtemp(prefix="ab-scabench-", dir="/tmp"))  # 0700: trusted
    try:
        generated = tmp / "generated.yml"
        generated.write_text(generated_policy(args.checks))
        generated.chmod(0o600)
        cases = [("baseline", str(BASELINE_FILE)), (f"generated-{args.checks}", str(generated))]
        cases += [(os.path.basename(p), p) for p in args.policy]
        for name, path in cases:
            print(show(name, measure(path, args.repeat)), flush=True)
        if not args.policy:
            print("(no --policy FILE given: a benchmark policy of your choice is not measured)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
