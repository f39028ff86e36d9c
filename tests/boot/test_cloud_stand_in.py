"""The boot harness's AWS stand-in mends one moto gap on the way in (tests/boot/harness/cloud.py)."""

from __future__ import annotations

import urllib.parse

from tests.boot.harness.cloud import instance_ids_from_one


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
