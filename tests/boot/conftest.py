"""Fixtures of the boot harness: the cached root, and one cluster that the scenarios drive in order.

The scenarios (test_scenarios.py) boot containers and need root; they run through `make boot-test`, which
sets ALCHEMY_BOOT_TEST=1. The unit suite collects only the applier's tests from this directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.boot.harness import pydeps
from tests.boot.harness.cluster import Cluster
from tests.boot.harness.node import REPOSITORY

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ALCHEMY_BOOT_CACHE", "/var/cache/alchemy-boot"))

collect_ignore = [] if os.environ.get("ALCHEMY_BOOT_TEST") == "1" else ["test_scenarios.py"]


@pytest.fixture(scope="session")
def boot_root() -> Path:
    """The Debian 13 root, built on first use and then reused (keyed on its build script)."""
    if os.geteuid() != 0:
        pytest.fail("the boot harness needs root (namespaces, mounts, systemd-nspawn): run `make boot-test` as root")
    started = time.monotonic()
    built = subprocess.run(
        ["bash", str(HERE / "build-root.sh"), str(CACHE)], check=True, capture_output=True, text=True
    )
    print(f"\nboot root: {built.stdout.strip()} ({time.monotonic() - started:.1f} s)")
    return Path(built.stdout.strip())


@pytest.fixture(scope="session")
def services_pydeps() -> Path | None:
    requirements = REPOSITORY / "alchemy_services" / "requirements.txt"
    if not requirements.exists():
        return None
    return pydeps.install(requirements, CACHE)


@pytest.fixture(scope="module")
def cluster(
    boot_root: Path, services_pydeps: Path | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The three-node cluster; torn down (containers, mounts, namespaces, servers) however the tests end,
    SIGTERM and SIGINT included."""
    work = Path(tmp_path_factory.mktemp("nodes"))
    made = Cluster(root=boot_root, work=work, ca_directory=CACHE / "ca", pydeps=services_pydeps)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def stop(signum: int, frame: FrameType | None) -> None:
        made.close()
        raise SystemExit(128 + signum)

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield made
    finally:
        made.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
