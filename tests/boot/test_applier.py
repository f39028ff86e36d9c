"""The boot harness's cloud-config applier: it implements a subset of what coreos-cloudinit accepts, and
applies the project's real user data the way the node needs it. Runs in the unit suite (no root, no boot)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from alchemy_constructs.node_bootstrap import (
    NODE_ENVIRONMENT,
    BundleLocation,
    DeployValuesLocation,
    NodeBootstrap,
    NodeSecrets,
)
from tests import cloud_config_schema

APPLIER = Path(__file__).parent / "node_files" / "cloud-config-apply"
ARN_PREFIX = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
BUNDLE_URL = "s3://cdk-assets-eu-west-1/bundle.gz"
PARAMETER = "CFN-DeployValues"
SERVICES = Path(__file__).resolve().parents[2] / "services"


def load_applier() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("cloud_config_apply", str(APPLIER))
    spec = importlib.util.spec_from_loader("cloud_config_apply", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


applier = load_applier()


def project_user_data() -> str:
    bootstrap = NodeBootstrap(
        region="eu-west-1",
        cluster_name="alchemy",
        services_directory=SERVICES,
        secrets=NodeSecrets(
            rabbitmq_cookie_arn=ARN_PREFIX + "cookie",
            rabbitmq_admin_password_arn=ARN_PREFIX + "admin",
        ),
        etcd_snapshot_bucket="snapshots",
        images={"router_image": "registry.example/router:1.0.0", "hello_world_image": "registry.example/hello:1.0.0"},
    )
    return bootstrap.cloud_config(
        bundle=BundleLocation(url=BUNDLE_URL, sha256="0" * 64),
        deploy_values=DeployValuesLocation(parameter_name=PARAMETER, digest="1" * 64),
    ).render()


def apply(tmp_path: Path, text: str) -> int:
    source = tmp_path / "user-data"
    source.write_text(text)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    status: int = applier.main(
        [
            "--from-file",
            str(source),
            "--root",
            str(root),
            "--no-systemctl",
            "--private-ipv4",
            "10.0.1.5",
            "--public-ipv4",
            "",
        ]
    )
    return status


def test_every_top_level_key_it_applies_is_one_coreos_cloudinit_accepts() -> None:
    assert set(cloud_config_schema.TOP_LEVEL) >= applier.TOP_LEVEL


def test_every_coreos_key_it_applies_is_one_coreos_cloudinit_accepts() -> None:
    assert set(cloud_config_schema.COREOS) >= applier.COREOS


def test_every_unit_key_it_applies_is_one_coreos_cloudinit_accepts() -> None:
    assert set(cloud_config_schema.UNIT) >= applier.UNIT


def test_every_file_key_and_encoding_it_applies_is_one_coreos_cloudinit_accepts() -> None:
    assert set(cloud_config_schema.FILE) >= applier.FILE
    assert applier.ENCODINGS - {None} <= cloud_config_schema.FILE_ENCODINGS


def test_the_project_user_data_uses_only_what_it_applies() -> None:
    applier.check(yaml.safe_load(project_user_data()))


def node_environment(tmp_path: Path) -> str:
    return (tmp_path / "root" / NODE_ENVIRONMENT.lstrip("/")).read_text()


def test_the_private_address_is_filled_into_the_environment_file(tmp_path: Path) -> None:
    assert apply(tmp_path, project_user_data()) == 0
    assert "PRIVATEIP=10.0.1.5\n" in node_environment(tmp_path)


def test_the_bundle_location_is_filled_into_the_environment_file(tmp_path: Path) -> None:
    assert apply(tmp_path, project_user_data()) == 0
    assert f"NODE_BUNDLE_URL={BUNDLE_URL}\n" in node_environment(tmp_path)


def test_the_deploy_values_parameter_is_named_in_the_environment_file(tmp_path: Path) -> None:
    assert apply(tmp_path, project_user_data()) == 0
    assert f"DEPLOY_VALUES_PARAMETER={PARAMETER}\n" in node_environment(tmp_path)


def test_the_fetch_script_is_written_executable(tmp_path: Path) -> None:
    apply(tmp_path, project_user_data())
    script = tmp_path / "root/opt/bin/alchemy-fetch-bundle"
    assert script.read_text().startswith("#!/bin/bash\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_the_first_unit_is_written_with_its_content(tmp_path: Path) -> None:
    apply(tmp_path, project_user_data())
    unit = tmp_path / "root/etc/systemd/system/alchemy-files.service"
    assert "ExecStart=/opt/bin/start-units /opt/alchemy/units" in unit.read_text()


def test_masked_units_point_at_dev_null(tmp_path: Path) -> None:
    apply(tmp_path, project_user_data())
    assert os.readlink(tmp_path / "root/etc/systemd/system/update-engine.service") == "/dev/null"


def test_the_update_strategy_lands_where_flatcar_reads_it(tmp_path: Path) -> None:
    apply(tmp_path, project_user_data())
    assert (tmp_path / "root/etc/coreos/update.conf").read_text() == "REBOOT_STRATEGY=off\n"


def test_a_key_it_does_not_implement_refuses_the_whole_document(tmp_path: Path) -> None:
    text = project_user_data() + "hostname: node-1\n"
    assert apply(tmp_path, text) == 2
    assert not (tmp_path / "root" / NODE_ENVIRONMENT.lstrip("/")).exists()


def test_the_refusal_names_the_key() -> None:
    with pytest.raises(applier.Refused, match=r"^unsupported key 'hostname' \(supported: coreos, write_files\)$"):
        applier.check({"hostname": "node-1"})


def test_an_unknown_unit_command_is_refused() -> None:
    with pytest.raises(applier.Refused, match=r"^unit 'a.service': command 'boot' is not one of"):
        applier.check({"coreos": {"units": [{"name": "a.service", "command": "boot"}]}})


def test_a_document_without_the_header_is_refused() -> None:
    with pytest.raises(applier.Refused, match=r"^the user data is not a #cloud-config document$"):
        applier.render("write_files: []\n", "10.0.1.5", "")
