"""The pull-request workflow is valid GitHub Actions YAML and runs the project's own diff logic.

Validity is checked offline against the GitHub workflow schema that the pinned
check-jsonschema ships (actionlint's PyPI wrapper downloads a binary at install time).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from alchemy_tools.cdk_diff_comment import ALLOW_LABEL
from tests.synth import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pr-diff.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_the_workflow_matches_the_github_workflow_schema() -> None:
    result = schema_check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert schema_check(broken).returncode != 0


def test_it_runs_on_every_new_commit_and_label_change(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as True.
    assert set(workflow[True]["pull_request"]["types"]) >= {"opened", "synchronize", "labeled", "unlabeled"}


def test_tests_and_synth_run_before_the_diff(workflow: dict[Any, Any]) -> None:
    commands = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert ("make test" in commands, "make synth" in commands, workflow["jobs"]["diff"]["needs"]) == (
        True,
        True,
        "test",
    )


def test_the_comment_comes_from_the_projects_own_module(workflow: dict[Any, Any]) -> None:
    scripts = "\n".join(step.get("run", "") for step in workflow["jobs"]["diff"]["steps"])
    assert "python -m alchemy_tools.cdk_diff_comment cdk-diff.txt" in scripts


def test_the_allow_label_is_the_one_the_module_knows(workflow: dict[Any, Any]) -> None:
    (post,) = [s for s in workflow["jobs"]["diff"]["steps"] if "ALLOW_DESTRUCTIVE" in s.get("env", {})]
    assert f"'{ALLOW_LABEL}'" in post["env"]["ALLOW_DESTRUCTIVE"]


def test_only_the_diff_job_may_write_comments(workflow: dict[Any, Any]) -> None:
    assert (workflow["permissions"], workflow["jobs"]["diff"]["permissions"]["pull-requests"]) == (
        {"contents": "read"},
        "write",
    )


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
IMAGES = ROOT / ".github" / "workflows" / "images.yml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_workflow_matches_the_github_workflow_schema(path: Path) -> None:
    result = schema_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def images() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(IMAGES.read_text())
    return loaded


def test_the_images_workflow_builds_both_service_targets(images: dict[Any, Any]) -> None:
    job = images["jobs"]["build"]
    builds = [step["run"] for step in job["steps"] if "docker build" in step.get("run", "")]
    assert (sorted(job["strategy"]["matrix"]["target"]), builds) == (
        ["hello_world", "router"],
        ['docker build --target "$TARGET" --tag "alchemy-$TARGET:ci" alchemy_services'],
    )


def test_the_images_workflow_reads_only_and_pins_its_actions_by_commit(images: dict[Any, Any]) -> None:
    uses = [step for step in images["jobs"]["build"]["steps"] if "uses" in step]
    assert (
        images["permissions"],
        [bool(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"])) for step in uses],
        [step.get("with", {}).get("persist-credentials") for step in uses if "checkout" in step["uses"]],
    ) == ({"contents": "read"}, [True] * len(uses), [False])
