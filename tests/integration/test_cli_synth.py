"""The real CDK CLI: `cdk synth` on defaults, and a user's mistakes (``make integration``, with the deploy cycle:
each run starts node and the app, about 5 s of CPU, so the unit suite checks the same messages in-process instead).

cfn-lint reads every synthesized variant in the quality gate (`make check`: scripts/lint_templates.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from alchemy_stack.kernel_compile_cache import CACHE_VARIABLE
from tests.synth import ROOT

pytestmark = pytest.mark.integration

CDK = ROOT / "node_modules" / ".bin" / "cdk"
TEMPLATE = "AlchemyStack.template.json"


def run_cdk(
    *args: str, output: Path, path_first: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CI": "true", **(env or {})}
    if path_first is not None:
        environment["PATH"] = f"{path_first}{os.pathsep}{environment['PATH']}"
    # No credentials may leak in: the default synth must not need an account.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        environment.pop(name, None)
    return subprocess.run(
        [str(CDK), "synth", "--quiet", "--output", str(output), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


DOCKER_SHIM = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/docker-was-called"\nexit 1\n'
"""A ``docker`` that records being called and fails: synth must not call it."""


@pytest.fixture(scope="module")
def docker_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("no-docker")
    shim = directory / "docker"
    shim.write_text(DOCKER_SHIM)
    shim.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The jsii kernel's compile cache of this module's synths (alchemy_stack/kernel_compile_cache.py)."""
    return tmp_path_factory.mktemp("jsii-compile-cache")


@pytest.fixture(scope="module")
def default_synth(
    tmp_path_factory: pytest.TempPathFactory, docker_shim: Path, compile_cache: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path_factory.mktemp("cdk.out")
    return run_cdk(output=output, path_first=docker_shim, env={CACHE_VARIABLE: str(compile_cache)}), output


def test_default_synth_succeeds_offline(default_synth: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, output = default_synth
    assert result.returncode == 0, result.stderr
    assert (output / TEMPLATE).is_file()


def test_default_synth_runs_no_docker_and_leaves_the_image_builds_to_deploy(
    default_synth: tuple[subprocess.CompletedProcess[str], Path], docker_shim: Path
) -> None:
    result, output = default_synth
    assert result.returncode == 0, result.stderr
    assert not (docker_shim / "docker-was-called").exists()
    assets = json.loads((output / "AlchemyStack.assets.json").read_text())
    targets = sorted(image["source"]["dockerBuildTarget"] for image in assets["dockerImages"].values())
    assert targets == ["hello_world", "router"]


def test_default_synth_prints_no_error_or_warning(
    default_synth: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, _ = default_synth
    assert "ERROR" not in result.stderr
    assert "WARNING" not in result.stderr


def test_cli_synth_carries_the_rule_pack_report(default_synth: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, output = default_synth
    report = json.loads((output / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def test_the_kernels_compile_cache_changes_nothing_synthesized(
    default_synth: tuple[subprocess.CompletedProcess[str], Path], compile_cache: Path, tmp_path: Path
) -> None:
    """The synth above ran its jsii kernel through the compile cache, and filled it; one with the cache's
    entries, and one on plain node (jsii's default), write the same template."""
    _, output = default_synth
    entries = list(compile_cache.glob("*/*"))
    assert len(entries) > 500  # aws-cdk-lib's and cdk-nag's modules
    cached = run_cdk(output=tmp_path / "cached", env={CACHE_VARIABLE: str(compile_cache)})
    plain = run_cdk(output=tmp_path / "plain", env={"JSII_NODE": "node"})
    assert cached.returncode == plain.returncode == 0, cached.stderr + plain.stderr
    template = (output / TEMPLATE).read_text()
    assert (tmp_path / "cached" / TEMPLATE).read_text() == template
    assert (tmp_path / "plain" / TEMPLATE).read_text() == template
    assert sorted(compile_cache.glob("*/*")) == sorted(entries)


def test_a_bad_setting_stops_the_cli_synth_with_one_clear_line(tmp_path: Path) -> None:
    """The one settings check through the real CLI (the rest run through ``app.main`` in-process):
    a mistyped key is refused while the keys the CLI itself adds to the context pass."""
    result = run_cdk("-c", "ingressCidrs=203.0.113.0/24", output=tmp_path)
    assert result.returncode != 0
    assert "error: unknown setting ingressCidrs='203.0.113.0/24': did you mean 'ingress_cidrs'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / TEMPLATE).exists()


def test_cdk_json_turns_off_everything_that_phones_home() -> None:
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["versionReporting"] is False
    assert cdk_json["notices"] is False
    assert cdk_json["context"]["cli-telemetry"] is False
