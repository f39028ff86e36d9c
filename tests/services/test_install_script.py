"""scripts/install-broker-test-deps.sh is shellcheck-clean and never leaves a system broker behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.synth import ROOT

SCRIPT = ROOT / "scripts" / "install-broker-test-deps.sh"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def test_shellcheck_finds_nothing() -> None:
    result = subprocess.run([str(SHELLCHECK), "--shell=bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")


def test_the_package_is_kept_from_starting_a_broker() -> None:
    text = SCRIPT.read_text()
    # policy-rc.d answering 101 is Debian's switch that stops maintainer scripts from starting services.
    assert (
        'printf \'#!/bin/sh\\nexit 101\\n\' | "${as_root[@]}" tee "$policy"' in text,
        '"${as_root[@]}" systemctl disable "${units[@]}"' in text,
    ) == (True, True)


def test_apt_runs_through_sudo_when_not_root() -> None:
    """GitHub's runners are not root: apt-get and systemctl go through sudo there."""
    text = SCRIPT.read_text()
    assert (
        "as_root=(sudo --non-interactive)" in text,
        '"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install' in text,
    ) == (
        True,
        True,
    )
