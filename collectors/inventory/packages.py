"""The ``packages`` collector: installed packages from dpkg's status file (install times
from its ``info`` directory), else from ``rpm -qa``.

With neither package database the scan raises: it must not be mistaken for "every package
disappeared".
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from collectors.inventory.host import _compact
from collectors.isotime import iso_utc
from collectors.state import Item


def _dpkg_record(info_dir: Path | None, name: str, arch: str) -> tuple[str, str]:
    """(path, install time) of a package's file list in dpkg's info directory.

    dpkg rewrites ``<name>[:<arch>].list`` when it installs or upgrades the package, so its
    mtime is the install time (dpkg keeps no other).
    """
    if info_dir is None:
        return "", ""
    for candidate in (info_dir / f"{name}:{arch}.list", info_dir / f"{name}.list"):
        try:
            st = candidate.stat()
        except OSError:
            continue
        return str(candidate), iso_utc(st.st_mtime)
    return "", ""


def parse_dpkg_status(text: str, info_dir: Path | None = None) -> dict[str, Item]:
    """Installed packages from the text of dpkg's status file (and its ``info`` dir)."""
    items: dict[str, Item] = {}
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation (long description, conffiles): not needed
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        arch = fields.get("Architecture", "")
        size = fields.get("Installed-Size", "")
        path, installed = _dpkg_record(info_dir, name, arch)
        # Maintainer, Section, Priority and Source have no field in the packages index.
        package = _compact(
            {
                "name": name,
                "version": fields.get("Version", ""),
                "architecture": arch,
                "type": "deb",
                "description": fields.get("Description", ""),
                "size": int(size) * 1024 if size.isdigit() else None,
                "installed": installed,
                "path": path,
            }
        )
        # Name and architecture identify a package: an upgrade is an update of it.
        items[f"deb:{name}:{arch}"] = Item({"package": package})
    return items


def scan_rpm() -> dict[str, Item]:
    fmt = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\t%{INSTALLTIME}\\t%{SUMMARY}\\n"
    out = subprocess.run(
        ["rpm", "-qa", "--queryformat", fmt],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    items: dict[str, Item] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        name, version, arch, size, installed, summary = parts[:6]
        package = _compact(
            {
                "name": name,
                "version": version,
                "architecture": arch,
                "type": "rpm",
                "description": summary,
                "size": int(size) if size.isdigit() else None,
                "installed": iso_utc(int(installed)) if installed.isdigit() else None,
            }
        )
        items[f"rpm:{name}:{arch}"] = Item({"package": package})
    return items


def make_package_scanner(dpkg_status: str) -> Callable[[], dict[str, Item]]:
    def scan_packages() -> dict[str, Item]:
        path = Path(dpkg_status)
        if path.exists():
            info = path.parent / "info"
            return parse_dpkg_status(
                path.read_text(encoding="utf-8", errors="replace"),
                info if info.is_dir() else None,
            )
        if shutil.which("rpm"):
            return scan_rpm()
        raise FileNotFoundError(
            f"no package database: {dpkg_status} is absent and rpm is not installed"
        )

    return scan_packages
