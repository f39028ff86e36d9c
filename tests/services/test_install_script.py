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
    assert ("printf '#!/bin/sh\\nexit 101\\n' >\"$policy\"" in text, 'systemctl disable "${units[@]}"' in text) == (
        True,
        True,
    )
