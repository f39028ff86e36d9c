"""Each construct alone: a bare stack, the construct and only the real dependencies it takes.

One test per construct shows it builds from its own arguments and does what it is for; the
others show each refuses a bad argument early, naming the argument and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from alchemy_constructs.cluster_secrets import ClusterSecrets
from alchemy_constructs.etcd_snapshots import EtcdSnapshots, SnapshotRestoreAccess
from alchemy_constructs.log_bucket import LogBucket
from alchemy_constructs.nat_image import IMAGE_ID_PARAMETER as NAT_IMAGE_PARAMETER
from alchemy_constructs.nat_image import NatImage
from alchemy_constructs.network import Network
from alchemy_constructs.node_group import NodeGroup
from alchemy_constructs.node_image import NodeImage
from alchemy_constructs.router_load_balancer import RouterLoadBalancer
from alchemy_constructs.service_images import ServiceImages
from tests.synth import construct_template

ROOT = Path(__file__).resolve().parent.parent
AZS = ("eu-west-1a", "eu-west-1b")


def vpc(stack: Stack) -> ec2.Vpc:
    return ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, restrict_default_security_group=False)


def role(stack: Stack) -> iam.Role:
    return iam.Role(stack, "Grantee", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))


def statements(template: Template, policy_type: str = "AWS::IAM::Policy") -> list[dict[str, Any]]:
    return [
        statement
        for policy in template.find_resources(policy_type).values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def refused(build: Callable[[Stack], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        construct_template(build)


# Network


def network(stack: Stack, **overrides: Any) -> Network:
    arguments: dict[str, Any] = {
        "cidr": "10.0.0.0/16",
        "availability_zones": AZS,
        "nat_instance_type": ec2.InstanceType("t3.micro"),
        **overrides,
    }
    return Network(stack, "Network", **arguments)


def test_network_alone_names_its_load_balancer_and_node_subnets() -> None:
    selected: dict[str, Any] = {}

    def build(stack: Stack) -> None:
        built = network(stack)
        for name in ("load_balancer_subnets", "node_subnets"):
            subnets = built.vpc.select_subnets(subnet_group_name=getattr(built, name).subnet_group_name).subnets
            selected[name] = sorted(stack.resolve(subnet.subnet_id)["Ref"] for subnet in subnets)

    template = construct_template(build)
    public = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Public"}])}},
    )
    private = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}])}},
    )
    assert selected == {"load_balancer_subnets": sorted(public), "node_subnets": sorted(private)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cidr": "10.0.0.1/16"}, r"^cidr must be a literal IPv4 CIDR block .*; received '10.0.0.1/16'$"),
        (
            {"cidr": "10.0.0.0/8"},
            r"^cidr must be a literal IPv4 CIDR block .* from /16 to /28.*; received '10.0.0.0/8'$",
        ),
        ({"cidr": Token.as_string({"Ref": "Cidr"})}, r"^cidr must be a literal .*; received a token$"),
        ({"availability_zones": ()}, r"^availability_zones must name at least one AZ; received an empty list$"),
        ({"availability_zones": ("eu-west-1a", "eu-west-1a")}, r"^availability_zones must not repeat an AZ"),
        ({"subnet_prefix": 16}, r"^subnet_prefix must fit 4 subnets .* from /18 to /28; received /16$"),
        ({"nat_ports": ()}, r"^nat_ports must name at least one TCP port; received an empty list$"),
        ({"nat_ports": (443, 70000)}, r"^nat_ports must be TCP ports from 1 to 65535; received \[70000\]$"),
    ],
)
def test_network_refuses(overrides: dict[str, Any], message: str) -> None:
    refused(lambda stack: network(stack, **overrides), message)


# RouterLoadBalancer


def load_balancer(stack: Stack, network: ec2.IVpc | None = None, **overrides: Any) -> RouterLoadBalancer:
    arguments: dict[str, Any] = {
        "vpc": network or vpc(stack),
        "subnets": ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        "access_log_bucket": LogBucket(stack, "Logs").bucket,
        **overrides,
    }
    return RouterLoadBalancer(stack, "RouterLoadBalancer", **arguments)


def test_load_balancer_alone_registers_a_target_and_opens_the_router_port_to_it() -> None:
    def build(stack: Stack) -> None:
        network = vpc(stack)
        lb = load_balancer(stack, network)
        group = autoscaling.AutoScalingGroup(
            stack,
            "Targets",
            vpc=network,
            instance_type=ec2.InstanceType("t3.micro"),
            machine_image=ec2.MachineImage.generic_linux({"eu-west-1": "ami-0123456789abcdef0"}),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        )
        lb.add_target(group)

    template = construct_template(build)
    (elb_id,) = template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer")
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"LoadBalancerNames": [{"Ref": elb_id}]})
    template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {"FromPort": 8080, "ToPort": 8080})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"router_port": 0}, r"^router_port must be a TCP port from 1 to 65535; received 0$"),
        (
            {"ingress_cidrs": ("203.0.113.7/24",)},
            r"^ingress_cidrs must be IPv4 CIDR blocks .*; received '203.0.113.7/24'$",
        ),
        ({"health_check_path": "health"}, r"^health_check_path must start with / .*; received 'health'$"),
        (
            {"draining_timeout": Duration.hours(2)},
            r"^draining_timeout must be from 1 second to 3600 seconds .*; received 2 hours$",
        ),
        ({"plain_http": False}, r"^plain_http=False leaves no listener: give certificate_arn for HTTPS$"),
    ],
)
def test_load_balancer_refuses(overrides: dict[str, Any], message: str) -> None:
    refused(lambda stack: load_balancer(stack, **overrides), message)


# NodeGroup


def node_group(stack: Stack, **overrides: Any) -> NodeGroup:
    arguments: dict[str, Any] = {
        "vpc": ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1, restrict_default_security_group=False),
        "machine_image": ec2.MachineImage.generic_linux({"eu-west-1": "ami-0123456789abcdef0"}),
        "instance_type": ec2.InstanceType("t3.medium"),
        "user_data": ec2.UserData.custom("#cloud-config\n"),
        **overrides,
    }
    return NodeGroup(stack, "NodeGroup", **arguments)


def test_node_group_alone_registers_nowhere_and_takes_grants_into_its_managed_policy() -> None:
    def build(stack: Stack) -> None:
        group = node_group(stack)
        iam.Grant.add_to_principal(
            grantee=group, actions=["sqs:SendMessage"], resource_arns=["arn:aws:sqs:eu-west-1:123456789012:q"]
        )

    template = construct_template(build)
    (asg,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup").values()
    assert "LoadBalancerNames" not in asg["Properties"]
    template.resource_count_is("AWS::IAM::Policy", 0)
    assert {
        "Action": "sqs:SendMessage",
        "Effect": "Allow",
        "Resource": "arn:aws:sqs:eu-west-1:123456789012:q",
    } in statements(template, "AWS::IAM::ManagedPolicy")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"root_volume_gb": 4}, r"^root_volume_gb must be from 8 to 16384 \(GiB\); received 4$"),
        ({"metadata_hop_limit": 0}, r"^metadata_hop_limit must be from 1 to 64; received 0$"),
        ({"key_pair_name": " "}, r"^key_pair_name must name a key pair, or be None for none; received an empty name$"),
        (
            {"ready_timeout": Duration.minutes(5)},
            r"^ready_timeout must be more than 5 minutes \(the boot margin\) and at most 12 hours; received 5 minutes$",
        ),
        (
            {"desired_capacity": 2, "max_capacity": 1},
            r"^node group capacity must satisfy 1 <= min <= desired <= max; received min=2, desired=2, max=1$",
        ),
    ],
)
def test_node_group_refuses(overrides: dict[str, Any], message: str) -> None:
    refused(lambda stack: node_group(stack, **overrides), message)


# ClusterSecrets


def test_cluster_secrets_alone_grant_reading_every_secret_through_secrets_manager_only() -> None:
    def build(stack: Stack) -> None:
        ClusterSecrets(stack, "Secrets").grant_read(role(stack))

    template = construct_template(build)
    secrets = set(template.find_resources("AWS::SecretsManager::Secret"))
    assert len(secrets) == 5
    read, decrypt = statements(template)
    assert {ref["Ref"] for ref in read["Resource"]} == secrets
    assert decrypt["Action"] == "kms:Decrypt"
    assert "secretsmanager." in str(decrypt["Condition"]["StringEquals"]["kms:ViaService"])


# EtcdSnapshots and SnapshotRestoreAccess


def snapshots(stack: Stack, prefix: str = "cluster/etcd/") -> EtcdSnapshots:
    return EtcdSnapshots(
        stack, "Snapshots", prefix=prefix, encryption_key=kms.Key(stack, "Key", enable_key_rotation=True)
    )


def test_etcd_snapshots_alone_grant_write_once_puts_and_a_restore_role_reads_them() -> None:
    def build(stack: Stack) -> None:
        bucket = snapshots(stack)
        bucket.grant_put_snapshots(role(stack))
        SnapshotRestoreAccess(stack, "Restore", snapshots=bucket)

    template = construct_template(build)
    assert {s["Sid"] for s in statements(template)} == {
        "PutSnapshotsOnlyIfNew",
        "UploadSnapshotParts",
        "EncryptSnapshotsThroughS3",
    }
    assert {s["Sid"] for s in statements(template, "AWS::IAM::ManagedPolicy")} == {
        "ListSnapshots",
        "ReadSnapshots",
        "DecryptSnapshotsThroughS3",
    }
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Sid": "EtcdSnapshotsAreWrittenOnce", "Effect": "Deny"})]
                )
            }
        },
    )


@pytest.mark.parametrize("prefix", ["", "cluster/etcd", "/etcd/", "cluster//etcd/", "cluster etcd/"])
def test_etcd_snapshots_refuse_a_prefix_that_is_not_one_folder(prefix: str) -> None:
    refused(
        lambda stack: snapshots(stack, prefix),
        rf"^prefix must be an S3 key prefix .* ending in / \(e.g. alchemy/etcd/\); received {prefix!r}$",
    )


# LogBucket


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"server_access_logs_prefix": "logs/"},
            r"^server_access_logs_prefix needs server_access_logs_bucket .*; received a prefix 'logs/' and no bucket$",
        ),
        (
            {"expiration": Duration.hours(12)},
            r"^expiration must be a whole number of days, at least 1 .*; received 12 hours$",
        ),
    ],
)
def test_log_bucket_refuses(arguments: dict[str, Any], message: str) -> None:
    refused(lambda stack: LogBucket(stack, "Logs", **arguments), message)


# ServiceImages


def test_service_images_alone_grant_nothing_when_nothing_is_built() -> None:
    def build(stack: Stack) -> None:
        images = ServiceImages(stack, "Images", directory=ROOT / "alchemy_services", wanted=())
        images.grant_pull(role(stack))

    template = construct_template(build)
    template.resource_count_is("AWS::IAM::Policy", 0)


def test_service_images_refuse_an_unknown_image() -> None:
    refused(
        lambda stack: ServiceImages(stack, "Images", directory=ROOT / "alchemy_services", wanted=("db_image",)),
        r"^wanted: no image target for db_image; known: router_image, hello_world_image$",
    )


def test_service_images_refuse_a_directory_without_a_dockerfile(tmp_path: Path) -> None:
    refused(
        lambda stack: ServiceImages(stack, "Images", directory=tmp_path, wanted=("router_image",)),
        rf"^directory must be a build context with a Dockerfile; received {tmp_path}$",
    )


# NodeImage and NatImage


def test_node_image_alone_uses_the_given_image() -> None:
    def build(stack: Stack) -> None:
        image = NodeImage(stack, "NodeImage", channel="stable", image_id="ami-0123456789abcdef0")
        ec2.CfnInstance(stack, "Instance", image_id=image.machine_image.get_image(stack).image_id)

    construct_template(build).has_resource_properties("AWS::EC2::Instance", {"ImageId": "ami-0123456789abcdef0"})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"channel": "edge"}, r"^channel must be one of stable, beta, alpha, lts; received 'edge'$"),
        (
            {"channel": "stable", "image_id": "ami-123"},
            r"^image_id must be an AMI id such as ami-0123456789abcdef0; received 'ami-123'$",
        ),
    ],
)
def test_node_image_refuses(arguments: dict[str, Any], message: str) -> None:
    refused(lambda stack: NodeImage(stack, "NodeImage", **arguments), message)


def test_nat_image_alone_asks_for_the_image_in_an_environment_agnostic_stack() -> None:
    def build(stack: Stack) -> None:
        image = NatImage(stack, "NatImage")
        ec2.CfnInstance(stack, "Instance", image_id=image.machine_image.get_image(stack).image_id)

    template = construct_template(build)
    template.has_parameter(NAT_IMAGE_PARAMETER, {"Type": "AWS::EC2::Image::Id"})
    template.has_resource_properties("AWS::EC2::Instance", {"ImageId": {"Ref": NAT_IMAGE_PARAMETER}})
