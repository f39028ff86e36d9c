"""The boot harness's own pieces that need no booted node: the AWS stand-in mends one moto gap on the way in
(harness/cloud.py), and the nodes apply their user data with the harness's applier or a given coreos-cloudinit."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from tests.boot.harness.cloud import instance_ids_from_one
from tests.boot.harness.node import (
    COREOS_CLOUDINIT,
    COREOS_CLOUDINIT_PATH,
    NODE_FILES,
    OWN_APPLIER_PATH,
    cloudinit_binary,
    with_applier,
)


def test_instance_ids_numbered_as_rabbitmq_does_are_numbered_from_one() -> None:
    """RabbitMQ's AWS peer discovery numbers the ids after its two other parameters; moto reads only from 1."""
    query = "Action=DescribeInstances&InstanceId.3=i-a&InstanceId.4=i-b&Version=2015-10-01"
    assert sorted(urllib.parse.parse_qsl(instance_ids_from_one(query))) == [
        ("Action", "DescribeInstances"),
        ("InstanceId.1", "i-a"),
        ("InstanceId.2", "i-b"),
        ("Version", "2015-10-01"),
    ]


def test_the_order_of_the_ids_is_kept_and_other_parameters_are_untouched() -> None:
    query = "Action=DescribeInstances&InstanceId.12=i-c&InstanceId.3=i-a&Filter.1.Name=tag%3Ax&Filter.1.Value.1=y"
    assert urllib.parse.parse_qsl(instance_ids_from_one(query)) == [
        ("Action", "DescribeInstances"),
        ("Filter.1.Name", "tag:x"),
        ("Filter.1.Value.1", "y"),
        ("InstanceId.1", "i-a"),
        ("InstanceId.2", "i-c"),
    ]


def test_without_a_coreos_cloudinit_binary_the_nodes_use_the_harness_applier() -> None:
    unit = (NODE_FILES / "alchemy-boot-cloudinit.service").read_text()
    assert cloudinit_binary({}) is None
    assert with_applier(unit, None) == unit
    assert f"ExecStart={OWN_APPLIER_PATH}\n" in unit


def test_a_coreos_cloudinit_binary_named_in_the_environment_applies_the_user_data(tmp_path: Path) -> None:
    """As Flatcar's EC2 OEM runs it; the harness binds the binary at the path the unit names."""
    binary = tmp_path / "coreos-cloudinit"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    chosen = cloudinit_binary({COREOS_CLOUDINIT: str(binary)})
    unit = with_applier((NODE_FILES / "alchemy-boot-cloudinit.service").read_text(), chosen)
    assert chosen == binary
    assert f"ExecStart={COREOS_CLOUDINIT_PATH} --oem=ec2-compat\n" in unit
    assert OWN_APPLIER_PATH not in unit


def test_a_named_binary_that_cannot_run_is_refused_by_name(tmp_path: Path) -> None:
    not_executable = tmp_path / "coreos-cloudinit"
    not_executable.write_text("")
    for named in (str(not_executable), str(tmp_path / "missing")):
        with pytest.raises(ValueError, match=f"^{COREOS_CLOUDINIT}="):
            cloudinit_binary({COREOS_CLOUDINIT: named})
