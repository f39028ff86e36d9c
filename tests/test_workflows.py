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

from alchemy_tools.cdk_diff_comment import ACKNOWLEDGMENTS_FILE
from tests.synth import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pr-diff.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    """One run of the checker over ``paths`` (it starts in about half a second, so not once a file)."""
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    # Beside a valid one, as the check of every workflow runs: one bad file fails the whole run.
    result = schema_check(WORKFLOW, broken)
    assert result.returncode != 0
    assert "broken.yml" in result.stdout + result.stderr


def steps_of(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def scripts_of(workflow: dict[Any, Any], job: str) -> str:
    return "\n".join(step.get("run", "") for step in steps_of(workflow, job))


def test_it_runs_on_every_new_commit(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as True.
    assert set(workflow[True]["pull_request"]["types"]) == {"opened", "synchronize", "reopened"}


ONLY_IN_CI_RUN = ("make boot-test",)
"""Needs root, mmdebstrap and systemd-nspawn with a Debian mirror: it runs in .ci/run, not yet on GitHub's runners."""


def make_commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("make ")]


def test_the_test_job_runs_exactly_the_make_targets_of_ci_run(workflow: dict[Any, Any]) -> None:
    ci = [line for line in make_commands((ROOT / ".ci" / "run").read_text()) if line not in ONLY_IN_CI_RUN]
    assert make_commands(scripts_of(workflow, "test")) == ci


def test_only_the_test_job_runs_the_targets_that_install_system_packages(workflow: dict[Any, Any]) -> None:
    """`make test` and `make services-test` install Debian's etcd and RabbitMQ (through sudo): the only steps that
    may use root."""
    scripts = {job: scripts_of(workflow, job) for job in workflow["jobs"]}
    installing = [
        job
        for job, text in scripts.items()
        if "apt" in text or "make test" in text or "make services-test" in text or "-deps" in text
    ]
    assert installing == ["test"]


def test_the_install_script_uses_sudo_when_not_root() -> None:
    script = (ROOT / "scripts" / "install-node-test-deps.sh").read_text()
    assert "as_root=(sudo --non-interactive)" in script


def test_every_action_is_pinned_by_commit_sha(workflow: dict[Any, Any]) -> None:
    uses = [step["uses"] for job in workflow["jobs"] for step in steps_of(workflow, job) if "uses" in step]
    assert [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u)] == []


def test_every_checkout_drops_its_credentials(workflow: dict[Any, Any]) -> None:
    checkouts = [
        step
        for job in workflow["jobs"]
        for step in steps_of(workflow, job)
        if "actions/checkout" in step.get("uses", "")
    ]
    assert [step["with"]["persist-credentials"] for step in checkouts] == [False] * len(checkouts)


def test_setup_steps_cache_pip_and_npm(workflow: dict[Any, Any]) -> None:
    caches = {
        step["with"].get("cache")
        for job in ("test", "diff")
        for step in steps_of(workflow, job)
        if "setup-" in step.get("uses", "")
    }
    assert caches == {"pip", "npm"}


def test_the_workflow_grants_nothing_by_default(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {}


def test_no_job_may_write_issues(workflow: dict[Any, Any]) -> None:
    assert [job for job, spec in workflow["jobs"].items() if "issues" in spec.get("permissions", {})] == []


def test_only_the_verdict_job_may_write_comments(workflow: dict[Any, Any]) -> None:
    writers = [job for job, spec in workflow["jobs"].items() if spec["permissions"].get("pull-requests") == "write"]
    assert writers == ["verdict"]


def test_the_job_with_cloud_credentials_cannot_write_to_github(workflow: dict[Any, Any]) -> None:
    assert workflow["jobs"]["diff"]["permissions"] == {"contents": "read", "id-token": "write"}


def test_the_commenting_job_runs_the_base_branch_s_code(workflow: dict[Any, Any]) -> None:
    (checkout,) = [s for s in steps_of(workflow, "verdict") if "actions/checkout" in s.get("uses", "")]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"


def test_the_diff_uses_templates_and_no_lookups(workflow: dict[Any, Any]) -> None:
    assert "cdk diff --no-color --no-lookups --method=template" in scripts_of(workflow, "diff")


def test_forks_get_an_explicit_failure_not_a_skip(workflow: dict[Any, Any]) -> None:
    (fork,) = [s for s in steps_of(workflow, "verdict") if s.get("name") == "Diff not run for forks"]
    assert ("diff not run for forks" in fork["run"], "exit 1" in fork["run"], workflow["jobs"]["verdict"]["if"]) == (
        True,
        True,
        "always()",
    )


def test_the_comment_comes_from_the_projects_own_modules(workflow: dict[Any, Any]) -> None:
    scripts = scripts_of(workflow, "verdict")
    assert (
        "python -m alchemy_tools.cdk_diff_comment" in scripts,
        "python -m alchemy_tools.pr_comments" in scripts,
    ) == (
        True,
        True,
    )


def test_the_comment_carries_the_head_commit(workflow: dict[Any, Any]) -> None:
    (post,) = [s for s in steps_of(workflow, "verdict") if "HEAD_SHA" in s.get("env", {})]
    assert post["env"]["HEAD_SHA"] == "${{ github.event.pull_request.head.sha }}"


def test_the_acknowledgments_file_is_the_one_the_module_reads(workflow: dict[Any, Any]) -> None:
    assert f"cp {ACKNOWLEDGMENTS_FILE} " in scripts_of(workflow, "diff")


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
IMAGES = ROOT / ".github" / "workflows" / "images.yml"


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    assert {path.name for path in WORKFLOWS} >= {WORKFLOW.name, IMAGES.name}
    result = schema_check(*WORKFLOWS)
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
