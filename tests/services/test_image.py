"""The services' Dockerfile: linted by hadolint, and shaped as the platform needs it.

No Docker engine is needed here: the workflow in .github/workflows/images.yml builds both targets.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.synth import ROOT

PACKAGE = ROOT / "alchemy_services"
DOCKERFILE = PACKAGE / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def stages() -> dict[str, list[str]]:
    """Each stage's name and its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if match := re.match(r"FROM \S+ AS (\S+)$", line):
            current = found.setdefault(match.group(1), [])
        elif line and not line.startswith("#"):
            current.append(line)
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")


def test_hadolint_catches_an_unpinned_base_image(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python\nRUN echo hi\n")
    result = subprocess.run([str(HADOLINT), str(broken)], capture_output=True, text=True, check=False)
    assert "DL3006" in result.stdout


def test_the_targets_run_the_services_modules() -> None:
    entrypoints = {name: [i for i in body if i.startswith("ENTRYPOINT")] for name, body in stages().items()}
    assert (entrypoints["router"], entrypoints["hello_world"]) == (
        ['ENTRYPOINT ["python", "-m", "alchemy_services.router"]'],
        ['ENTRYPOINT ["python", "-m", "alchemy_services.hello_world"]'],
    )


def test_both_targets_build_on_a_runtime_that_runs_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert (
        re.findall(r"^FROM (\S+) AS (?:router|hello_world)$", text, re.MULTILINE),
        [i for i in stages()["runtime"] if i.startswith("USER")],
    ) == (["runtime", "runtime"], ["USER 10001:10001"])


def test_the_base_image_is_a_pinned_slim_python_release() -> None:
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_dependencies_install_from_hashed_wheels_only() -> None:
    (install,) = [i for i in stages()["build"] if "install" in i]
    assert ("--require-hashes" in install, "--only-binary=:all:" in install) == (True, True)


def test_the_build_context_admits_only_the_modules_and_their_requirements() -> None:
    rules = [line for line in (PACKAGE / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert rules == ["*", "!*.py", "!requirements.txt"]


def test_every_requirement_is_pinned_with_a_hash() -> None:
    text = re.sub(r"\\\n\s*", " ", (PACKAGE / "requirements.txt").read_text())
    requirements = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    unpinned = [
        line for line in requirements if not re.match(r"^[a-z0-9-]+==[0-9.]+(\s+--hash=sha256:[0-9a-f]{64})+\s*$", line)
    ]
    assert (len(requirements) > 0, unpinned) == (True, [])
