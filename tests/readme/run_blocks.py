"""Run every ```sh block of README.md, as pasted, in a fresh clone: each with ``bash -e``.

    python3 tests/readme/run_blocks.py [--worktree] [--keep] [--verbose] [--block N]

What it does:

1. ``git clone`` of this repository's HEAD into a new temporary directory (``--worktree``:
   a copy of the working tree instead, tracked and untracked files but not ignored ones,
   to try uncommitted changes), then ``make venv`` there, as a new user would;
2. extracts the README's fenced blocks opened by exactly ```` ```sh ````, in order;
3. runs each one alone, ``bash -e BLOCK`` with the clone as working directory and its
   ``.venv/bin`` first on ``PATH`` (as after ``. .venv/bin/activate``), no ``AGENTBUS_*``
   variable inherited, stdin empty, a timeout per block;
4. stops at the first block that fails and prints its number, its README line and its
   output; exit 0 when every block passed, 1 when one failed, 2 when the clone or its
   ``make venv`` failed;
5. whatever happens, ends every process still running from the clone (the detached
   reference server, ``agentbus run &``): SIGTERM, then SIGKILL after a grace period,
   and removes the temporary directory (``--keep`` keeps it).

Blocks skipped:

- a block with ``sudo`` in it (installing as a service needs root and changes the host);
- a block right after an HTML comment that starts with ``<!-- readme-test: skip``, e.g.
  ``<!-- readme-test: skip (the test suite and the demo are checked on their own) -->`` on
  the line before the opening fence (blank lines between are allowed). The comment does
  not show on GitHub; say in it why the block is skipped.

The README's blocks use fixed ports (the quick start's server: 27400) and files inside the
clone only, so two runs at once on one host clash only on those ports. Standard library
only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP_MARK = "<!-- readme-test: skip"
#: seconds one block may take (the quick start takes ~5 s)
BLOCK_TIMEOUT = 300.0
#: seconds ``make venv`` may take in the clone
VENV_TIMEOUT = 900.0
#: seconds the processes left running get after SIGTERM
STOP_GRACE = 15.0

_OPEN = re.compile(r"^```sh\s*$")
_CLOSE = re.compile(r"^```\s*$")
_SUDO = re.compile(r"\bsudo(edit)?\b")


@dataclass(frozen=True)
class Block:
    number: int  # 1-based, among the ```sh blocks
    line: int  # the README line of its opening fence
    text: str
    skip: str | None  # why it is skipped; None: it runs


def extract_blocks(readme: str) -> list[Block]:
    """Every ```sh block of ``readme``, with why it is skipped (None: it runs)."""
    blocks: list[Block] = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if not _OPEN.match(lines[i]):
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not _CLOSE.match(lines[i]):
            body.append(lines[i])
            i += 1
        text = "\n".join(body) + "\n"
        before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        skip = None
        if before.strip().startswith(SKIP_MARK):
            skip = "marked " + before.strip()
        elif _SUDO.search(text):
            skip = "needs sudo"
        blocks.append(Block(len(blocks) + 1, start + 1, text, skip))
        i += 1
    return blocks


def make_clone(dest: Path, *, worktree: bool) -> None:
    if not worktree:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True
        )
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if not src.is_file():
            continue  # deleted in the working tree
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


def block_env(clone: Path) -> dict[str, str]:
    """The environment of a user who activated the clone's venv, with no agentbus setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(clone / ".venv")
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_block(block: Block, clone: Path, work: Path) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, output, seconds) of ``bash -e`` on the block."""
    script = work / f"block-{block.number}.sh"
    script.write_text(block.text)
    # Output to a file, not a pipe: a process the block leaves running (``cmd &``) keeps
    # the block's stdout open, and reading a pipe to its end would wait for it.
    out_path = work / f"block-{block.number}.out"
    began = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-e", str(script)],
            cwd=clone,
            env=block_env(clone),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            code: int | None = proc.wait(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    return code, out_path.read_text(errors="replace"), time.monotonic() - began


def processes_under(root: Path) -> list[int]:
    """Pids of the processes whose working directory is ``root`` or below (not ours)."""
    found = []
    prefix = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith(prefix + os.sep):
            found.append(int(entry.name))
    return found


def stop_processes(root: Path) -> list[int]:
    """SIGTERM what runs from ``root``, SIGKILL what is left after STOP_GRACE; their pids."""
    pids = processes_under(root)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the README's ```sh blocks, as pasted, in a fresh clone (bash -e).",
        epilog="example: python3 tests/readme/run_blocks.py --worktree --verbose",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--worktree", action="store_true", help="copy the working tree instead of cloning HEAD"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--verbose", action="store_true", help="print every block's output")
    parser.add_argument("--block", type=int, action="append", help="run only block N (repeatable)")
    args = parser.parse_args(argv)

    blocks = extract_blocks((REPO / "README.md").read_text())
    base = Path(tempfile.mkdtemp(prefix="agentbus-readme-"))
    clone, work = base / "agentbus", base / "work"
    work.mkdir()
    try:
        print(f"readme: {'copying the working tree' if args.worktree else 'cloning HEAD'}"
              f" into {clone}", flush=True)  # fmt: skip
        clone.mkdir()
        make_clone(clone, worktree=args.worktree)
        print("readme: make venv", flush=True)
        venv = subprocess.run(
            ["make", "venv"],
            cwd=clone,
            env=block_env(clone),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VENV_TIMEOUT,
        )
        if venv.returncode != 0:
            print(f"readme: make venv failed ({venv.returncode}):\n{venv.stdout}{venv.stderr}")
            return 2
        for block in blocks:
            where = f"block {block.number} (README.md line {block.line})"
            if block.skip or (args.block and block.number not in args.block):
                print(f"readme: {where}: skipped ({block.skip or 'not asked'})", flush=True)
                continue
            code, output, seconds = run_block(block, clone, work)
            if code == 0:
                print(f"readme: {where}: ok ({seconds:.1f}s)", flush=True)
                if args.verbose:
                    print(_indent(output), flush=True)
                continue
            how = f"timed out after {BLOCK_TIMEOUT:g}s" if code is None else f"exit {code}"
            print(f"readme: {where} FAILED ({how}, {seconds:.1f}s)\n--- the block:")
            print(_indent(block.text))
            print("--- its output:")
            print(_indent(output), flush=True)
            return 1
        return 0
    finally:
        left = stop_processes(base)
        if left:
            print(f"readme: stopped {len(left)} process(es) left running: {left}", flush=True)
        if args.keep:
            print(f"readme: kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


if __name__ == "__main__":
    sys.exit(main())
