"""The Debian sources of the real corpus: which packages, and installing them on a fresh machine.

``mka data real --from-debian --install`` runs ``apt-get update`` and ``apt-get install -y
--no-install-recommends`` for the packages of :data:`DEBIAN_SOURCES` that are not installed
(plus ``fluidsynth``, which renders the soundfont), then builds from them. Without
``--install`` a missing package is an error that names the command to run.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

from mka_core.errors import InputError

DEBIAN_SOURCES = Path(__file__).with_name("debian.toml")
#: Programs the build runs, with the package that provides them.
TOOLS = {"fluidsynth": "fluidsynth"}


def packages() -> list[str]:
    data = tomllib.loads(DEBIAN_SOURCES.read_text(encoding="utf-8"))
    names = [str(table["package"]) for table in data.get("source", []) if table.get("package")]
    return list(dict.fromkeys(names + list(TOOLS.values())))


def installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and "install ok installed" in result.stdout


def missing_packages() -> list[str]:
    return [name for name in packages() if not installed(name)]


def ensure_packages(install: bool = False) -> list[str]:
    """Install (``install=True``) or require the Debian packages; returns those that were installed now."""
    missing = missing_packages()
    if not missing:
        return []
    command = "apt-get install -y --no-install-recommends " + " ".join(missing)
    if not install:
        raise InputError(f"The Debian package(s) {', '.join(missing)} are not installed; run `{command}` as root, or "
                         "pass --install.")
    if shutil.which("apt-get") is None:
        raise InputError(f"--install needs apt-get (a Debian or Ubuntu machine) to install {', '.join(missing)}.")
    for args in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
        result = subprocess.run(args, env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        if result.returncode != 0:
            raise InputError(f"`{' '.join(args)}` failed (exit {result.returncode}); run it as root and check the "
                             "apt sources.")
    still = missing_packages()
    if still:
        raise InputError(f"After apt-get install, {', '.join(still)} is still not installed; check apt's output.")
    return missing
