"""Every node script is shellcheck-clean: they run on Flatcar with nothing but bash to catch mistakes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.node.harness import ROOT, SCRIPTS, VENV_BIN

NODE_SCRIPTS = sorted(path for path in SCRIPTS.iterdir() if path.is_file())
INSTALL_SCRIPT = ROOT / "scripts" / "install-node-test-deps.sh"
PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")
"""`{{name}}` markers that the node bundle fills in (image names): checked as the rendered script will read."""


@pytest.mark.parametrize("script", [*NODE_SCRIPTS, INSTALL_SCRIPT], ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    rendered = PLACEHOLDER.sub("registry.example/image:1.0", script.read_text())
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "--shell=bash", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout == ""
    assert result.returncode == 0, result.stderr
