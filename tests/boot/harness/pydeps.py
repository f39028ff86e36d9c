"""The services' Python dependencies for the node root's Python 3.13, installed once per requirements file.

pip installs binary wheels for CPython 3.13 on x86-64 Linux into a cache directory keyed on the
requirements file; the nodes get it read-only on their PYTHONPATH (the docker shim sets it for the router
and hello_world). No code runs at install time, so the host's Python version does not matter. The file's
hashes are those of the image's CPython 3.11 wheels: the same pinned versions are installed here without
them (the root's Python is Debian 13's 3.13).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

PYTHON_VERSION = "3.13"


def install(requirements: Path, cache: Path) -> Path:
    key = hashlib.sha256(requirements.read_bytes() + PYTHON_VERSION.encode()).hexdigest()[:16]
    target = cache / f"pydeps-{key}"
    if (target / ".complete").exists():
        return target
    partial = cache / f"pydeps-{key}.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+==[^\s\\]+)", requirements.read_text(), flags=re.MULTILINE)
    unhashed = cache / f"pydeps-{key}.txt"
    unhashed.write_text("".join(f"{pin}\n" for pin in pins))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(partial),
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "linux_x86_64",
            "-r",
            str(unhashed),
        ],
        check=True,
    )
    (partial / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
