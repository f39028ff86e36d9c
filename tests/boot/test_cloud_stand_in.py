"""The boot harness's own pieces that need no booted node: the AWS stand-in mends one moto gap on the way in
(harness/cloud.py), the nodes apply their user data with the harness's applier or a given coreos-cloudinit, and a
phase's probing rounds are read whole (harness/cluster.py)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from tests.boot.harness.cloud import instance_ids_from_one
from tests.boot.harness.cluster import Probe, Sample, rounds_overlapping
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


def test_a_round_under_way_as_a_phase_starts_or_ends_is_read_whole() -> None:
    """A phase from 10 s to 30 s: a round that began before it (or ended after it) counts with every node it
    sampled, so a round cut at the start does not look like a cluster with one healthy member; rounds wholly
    outside the phase do not count."""

    def sample(node: str, at: float, round_: int) -> Sample:
        return Sample(time=at, hello=True, etcd_state="healthy", broker=True, round=round_, node=node)

    probes = [
        Probe(
            [sample("a", 9.0, 1), sample("a", 9.8, 2), sample("a", 20.0, 3), sample("a", 29.9, 4), sample("a", 31.0, 5)]
        ),
        Probe(
            [
                sample("b", 9.5, 1),
                sample("b", 10.1, 2),
                sample("b", 20.3, 3),
                sample("b", 30.2, 4),
                sample("b", 31.3, 5),
            ]
        ),
    ]
    rounds = rounds_overlapping(probes, 10.0, 30.0)
    assert {number: sorted(s.node for s in samples) for number, samples in rounds.items()} == {
        2: ["a", "b"],
        3: ["a", "b"],
        4: ["a", "b"],
    }
