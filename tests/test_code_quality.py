"""The linter is part of the suite, and the quality gate (`make check`) stays one gate that works offline.

Strict mypy runs once, in the gate (pre-commit's mypy hook, configured by pyproject.toml): a second, weaker
configuration inside the suite only disagreed with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from scripts.secret_scan import GENERATED
from tests.synth import ROOT

PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"
MAKEFILE = ROOT / "Makefile"
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-dev.lock")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout


def test_code_is_formatted() -> None:
    result = run("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout


def hooks() -> list[dict[str, Any]]:
    config: dict[str, Any] = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_every_hook_runs_a_tool_from_the_projects_venv() -> None:
    """Nothing to fetch when the hooks run: they work offline, at the versions requirements-dev.txt pins."""
    config: dict[str, Any] = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert [
        hook["id"] for hook in hooks() if hook["language"] != "system" or not hook["entry"].startswith(".venv/bin/")
    ] == []


def test_the_gate_runs_the_linters_the_project_has() -> None:
    assert {hook["id"] for hook in hooks()} == {
        "ruff",
        "ruff-format",
        "shellcheck",
        "shfmt",
        "workflow-schema",
        "secret-scan",
        "cfn-lint",
        "mypy",
    }


def test_the_secret_scan_leaves_out_only_the_generated_files() -> None:
    """The hook's exclude is the scanner's own list of generated files, and every other text file is read."""
    (hook,) = [hook for hook in hooks() if hook["id"] == "secret-scan"]
    assert (hook["exclude"], hook["types"], hook.get("files", "")) == (GENERATED.pattern, ["text"], "")


def test_cfn_lint_runs_when_what_the_templates_are_made_of_changes() -> None:
    (hook,) = [hook for hook in hooks() if hook["id"] == "cfn-lint"]
    watched = re.compile(hook["files"])
    sources = ("app.py", "cdk.json", "alchemy_stack/stack.py", "alchemy_constructs/network.py", "services/x.service")
    for changed in sources:
        assert watched.match(changed), changed
    assert not watched.match("README.md")


def test_make_lint_is_the_gate() -> None:
    targets = dict(re.findall(r"^([a-z][a-z-]*):(.*)$", MAKEFILE.read_text(), flags=re.MULTILINE))
    assert (targets["lint"].strip(), "pre-commit run --all-files" in MAKEFILE.read_text()) == ("check", True)


def test_make_help_lists_every_target() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE.read_text(), flags=re.MULTILINE))
    assert listed == targets


def test_every_locked_requirement_is_pinned_with_hashes() -> None:
    """pip's --require-hashes refuses the install otherwise; a lock without them would only fail at setup."""
    unpinned = []
    for lock in LOCKS:
        for entry in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
            first = entry.splitlines()[0]
            if first.startswith("#") or not first.strip():
                continue
            if not re.match(r"^[A-Za-z0-9._-]+==[^ ]+ \\$", first) or "--hash=sha256:" not in entry:
                unpinned.append(f"{lock.name}: {first}")
    assert unpinned == []


def test_every_top_level_pin_is_in_its_lock_at_the_same_version() -> None:
    """The locks are compiled from requirements*.txt: a pin changed without `make lock` is caught here."""

    def pins(text: str) -> set[str]:
        return {
            line.split()[0].lower().replace("_", "-")
            for line in text.splitlines()
            if "==" in line and not line.startswith((" ", "#"))
        }

    stale = []
    for source, lock in ((ROOT / "requirements.txt", LOCKS[0]), (ROOT / "requirements-dev.txt", LOCKS[1])):
        locked = pins(lock.read_text())
        stale += [pin for pin in pins(source.read_text()) if re.sub(r"\[.*\]", "", pin) not in locked]
    assert stale == []


GROUPED_TESTS = """
import os
from pathlib import Path

import pytest


def record(name):
    Path(name).write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("index", range(4))
def test_grouped(index):
    record(f"grouped-{index}")


@pytest.mark.parametrize("index", range(4))
def test_free(index):
    record(f"free-{index}")
"""


def test_xdist_runs_a_group_in_one_process(tmp_path: Path) -> None:
    """A plain `pytest` run (pyproject's addopts: `--dist loadgroup`) keeps each settings variant's tests in one
    process (tests/conftest.py), so the variant is synthesized once; pytest 9.2 with pytest-xdist 3.8 silently
    hands a group's tests to every process instead."""
    (tmp_path / "test_groups.py").write_text(GROUPED_TESTS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    workers = {path.name: path.read_text() for path in tmp_path.glob("*-*")}
    assert len(workers) == 8, result.stdout
    assert len({workers[f"grouped-{index}"] for index in range(4)}) == 1, workers
