"""The linter and the type checker are part of the suite."""

from __future__ import annotations

import subprocess
import sys

from tests.synth import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout


def test_code_is_formatted() -> None:
    result = run("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout


def test_mypy_strict_finds_nothing_in_the_projects_own_code() -> None:
    config = str(ROOT / "tests" / "mypy-own-code.ini")
    result = run(
        "mypy",
        "--config-file",
        config,
        "--cache-dir",
        "/dev/null",
        "app.py",
        "alchemy_stack",
        "alchemy_constructs",
        "alchemy_tools",
        "scripts",
    )
    assert result.returncode == 0, result.stdout
