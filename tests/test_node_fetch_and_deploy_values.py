"""The first unit's two own steps: alchemy-fetch-bundle (in the user data) fetches and checks the bundle and
reads the deploy values; alchemy-deploy-values (in the bundle) writes /etc/environment and fills the markers.

Both run as the node runs them, under a temporary root: the fetch script as the user data renders it with
its directory moved there, docker and sleep stubbed on PATH (the stub answers the AWS CLI's two calls).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from alchemy_constructs.node_bootstrap import (
    BUNDLE_ENVIRONMENT,
    DEPLOY_VALUE_FILES_MANIFEST,
    DEPLOY_VALUES_FILE,
    FETCH_SCRIPT,
    NODE_ENVIRONMENT,
    NODE_SCRIPTS,
    BundleLocation,
    DeployValuesLocation,
    NodeBootstrap,
)
from alchemy_stack.stack import SERVICES_DIRECTORY

BUNDLE = b"\x1f\x8b the bundle"
BUNDLE_URL = "s3://assets/bundle.tar.gz"
PARAMETER = "CFN-DeployValues-0123"
VALUES = "AWS_REGION=eu-west-1\nIMAGE_REPOSITORY=123456789012.dkr.ecr.eu-west-1.amazonaws.com/assets\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


# --- alchemy-deploy-values -------------------------------------------------------------------------------


def deploy_values(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE_SCRIPTS / "alchemy-deploy-values")],
        env={"PATH": os.environ["PATH"], "ALCHEMY_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(under(tmp_path, NODE_ENVIRONMENT), "REGION_NAME=eu-west-1\nPRIVATEIP=10.0.1.5\n")
    write(under(tmp_path, BUNDLE_ENVIRONMENT), "ROUTER_PORT=8080\n")
    write(under(tmp_path, DEPLOY_VALUES_FILE), VALUES)
    write(
        under(tmp_path, "/etc/systemd/system/router@.service"),
        "[Service]\nEnvironment=IMAGE=@@IMAGE_REPOSITORY@@:abc\n",
    )
    write(under(tmp_path, DEPLOY_VALUE_FILES_MANIFEST), "/etc/systemd/system/router@.service\n")
    return tmp_path


def test_the_environment_is_the_node_the_bundle_and_the_deploy_values_in_that_order(root: Path) -> None:
    result = deploy_values(root)
    assert result.returncode == 0, result.stderr
    assert (
        root / "etc/environment"
    ).read_text() == "REGION_NAME=eu-west-1\nPRIVATEIP=10.0.1.5\nROUTER_PORT=8080\n" + VALUES


def test_a_marker_is_filled_with_its_deploy_value(root: Path) -> None:
    assert deploy_values(root).returncode == 0
    assert (root / "etc/systemd/system/router@.service").read_text() == (
        "[Service]\nEnvironment=IMAGE=123456789012.dkr.ecr.eu-west-1.amazonaws.com/assets:abc\n"
    )


def test_a_value_is_filled_in_as_it_is(root: Path) -> None:
    """Not a pattern: bash's replacement would turn an unquoted & into the marker."""
    write(under(root, DEPLOY_VALUES_FILE), "IMAGE_REPOSITORY=a&b\\c\n")
    assert deploy_values(root).returncode == 0
    assert "Environment=IMAGE=a&b\\c:abc\n" in (root / "etc/systemd/system/router@.service").read_text()


def test_a_marker_without_a_deploy_value_fails_naming_both(root: Path) -> None:
    write(under(root, DEPLOY_VALUES_FILE), "AWS_REGION=eu-west-1\n")
    result = deploy_values(root)
    assert result.returncode == 1
    assert "/etc/systemd/system/router@.service needs the deploy value IMAGE_REPOSITORY" in result.stderr
    assert "@@IMAGE_REPOSITORY@@" in (root / "etc/systemd/system/router@.service").read_text()


def test_the_environment_is_written_without_a_manifest(root: Path) -> None:
    under(root, DEPLOY_VALUE_FILES_MANIFEST).unlink()
    assert deploy_values(root).returncode == 0
    assert (root / "etc/environment").read_text().endswith(VALUES)


# --- alchemy-fetch-bundle --------------------------------------------------------------------------------

DOCKER_STUB = """#!/bin/bash
# docker run ... IMAGE aws-args: the two AWS CLI calls of the fetch script, logged.
echo "$*" >>"$STUB_DIR/calls"
case "$*" in
*" s3 cp $BUNDLE_URL -")
  n=$(cat "$STUB_DIR/bad" 2>/dev/null || echo 0)
  if ((n > 0)); then echo $((n - 1)) >"$STUB_DIR/bad"; echo corrupt; else cat "$STUB_DIR/bundle"; fi ;;
*" ssm get-parameter --name $PARAMETER --query Parameter.Value --output text") cat "$STUB_DIR/values" ;;
*) echo "docker stub: unexpected: $*" >&2; exit 125 ;;
esac
"""


def fetch_script(directory: Path) -> Path:
    """The script as the user data writes it, its directory (/etc/alchemy) moved under ``directory``."""
    bootstrap = NodeBootstrap(region="eu-west-1", cluster_name="alchemy", services_directory=SERVICES_DIRECTORY)
    config = bootstrap.cloud_config(
        bundle=BundleLocation(url=BUNDLE_URL, sha256=hashlib.sha256(BUNDLE).hexdigest()),
        deploy_values=DeployValuesLocation(parameter_name=PARAMETER, digest="0" * 64),
    )
    (entry,) = [f for f in config.write_files if f.path.endswith(FETCH_SCRIPT)]
    script = write(directory / FETCH_SCRIPT, entry.content.replace("/etc/alchemy/", f"{directory}/etc/alchemy/"))
    script.chmod(0o755)
    return script


def fetch(tmp_path: Path, *, bad_downloads: int = 0) -> subprocess.CompletedProcess[str]:
    stubs = tmp_path / "stubs"
    write(stubs / "docker", DOCKER_STUB).chmod(0o755)
    write(stubs / "sleep", '#!/bin/sh\necho slept >>"$STUB_DIR/calls"\n').chmod(0o755)
    (tmp_path / "bundle").write_bytes(BUNDLE)
    write(tmp_path / "values", VALUES)
    write(tmp_path / "bad", str(bad_downloads))
    (tmp_path / "etc/alchemy").mkdir(parents=True, exist_ok=True)
    script = fetch_script(tmp_path)
    environment = {
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "STUB_DIR": str(tmp_path),
        "BUNDLE_URL": BUNDLE_URL,
        "PARAMETER": PARAMETER,
        "REGION_NAME": "eu-west-1",
        "NODE_BUNDLE_URL": BUNDLE_URL,
        "NODE_BUNDLE_SHA256": hashlib.sha256(BUNDLE).hexdigest(),
        "DEPLOY_VALUES_PARAMETER": PARAMETER,
    }
    return subprocess.run([str(script)], env=environment, capture_output=True, text=True, timeout=60, check=False)


def calls(tmp_path: Path) -> list[str]:
    return [
        line.split(" amazon/aws-cli:")[-1].split(" ", 1)[-1] for line in (tmp_path / "calls").read_text().splitlines()
    ]


def test_fetch_writes_the_checked_bundle_and_the_deploy_values(tmp_path: Path) -> None:
    result = fetch(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/alchemy/node-files.tar.gz").read_bytes() == BUNDLE
    assert (tmp_path / "etc/alchemy/deploy-values.env").read_text() == VALUES


def test_fetch_retries_a_bundle_with_another_hash(tmp_path: Path) -> None:
    result = fetch(tmp_path, bad_downloads=2)
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path).count("slept") == 2
    assert (tmp_path / "etc/alchemy/node-files.tar.gz").read_bytes() == BUNDLE


def test_fetch_keeps_a_bundle_already_there_with_the_right_hash(tmp_path: Path) -> None:
    (tmp_path / "etc/alchemy").mkdir(parents=True)
    (tmp_path / "etc/alchemy/node-files.tar.gz").write_bytes(BUNDLE)
    assert fetch(tmp_path).returncode == 0
    assert not any(" s3 " in f" {call} " for call in calls(tmp_path))


def test_fetch_gives_up_after_its_attempts(tmp_path: Path) -> None:
    result = fetch(tmp_path, bad_downloads=1000)
    assert result.returncode == 1
    assert calls(tmp_path).count("slept") == 40
