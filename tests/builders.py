"""Each construct alone in a test stack, built once per set of props."""

from __future__ import annotations

import functools

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancing as elb
from aws_cdk.assertions import Template

from alchemy_constructs.log_bucket import LogBucket
from alchemy_constructs.network import Network
from alchemy_constructs.node_group import NodeGroup
from alchemy_constructs.router_load_balancer import DEFAULT_TLS_POLICY, ROUTER_HEALTH_PATH, RouterLoadBalancer
from tests.synth import construct_template

AZS = ("eu-west-1a", "eu-west-1b")
NODE_IMAGE = "ami-0123456789abcdef0"


@functools.cache
def network_template(nat_per_az: bool = False, azs: tuple[str, ...] = AZS) -> Template:
    def build(stack: Stack) -> None:
        Network(
            stack,
            "Network",
            cidr="10.0.0.0/16",
            availability_zones=azs,
            nat_instance_type=ec2.InstanceType("t3.micro"),
            nat_per_az=nat_per_az,
        )

    return construct_template(build)


@functools.cache
def elb_template(
    certificate_arn: str | None = None,
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0",),
    health_check_path: str | None = ROUTER_HEALTH_PATH,
    tls_policy: str = DEFAULT_TLS_POLICY,
) -> Template:
    def build(stack: Stack) -> None:
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
        RouterLoadBalancer(
            stack,
            "RouterLoadBalancer",
            vpc=vpc,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            access_log_bucket=LogBucket(stack, "Logs").bucket,
            certificate_arn=certificate_arn,
            ingress_cidrs=ingress_cidrs,
            health_check_path=health_check_path,
            tls_policy=tls_policy,
        )

    return construct_template(build)


@functools.cache
def node_group_template(
    desired: int = 3, minimum: int | None = None, maximum: int | None = None, key_pair_name: str | None = None
) -> Template:
    def build(stack: Stack) -> None:
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
        load_balancer = elb.LoadBalancer(stack, "Elb", vpc=vpc, internet_facing=True)
        load_balancer.add_listener(external_port=80, internal_port=8080)
        node_group = NodeGroup(
            stack,
            "NodeGroup",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            machine_image=ec2.MachineImage.generic_linux({"eu-west-1": NODE_IMAGE}),
            instance_type=ec2.InstanceType("t3.medium"),
            user_data=ec2.UserData.custom("#cloud-config\n"),
            desired_capacity=desired,
            min_capacity=minimum,
            max_capacity=maximum,
            root_volume_gb=50,
            key_pair_name=key_pair_name,
        )
        # The stack's wiring: the group registers with the load balancer it is given.
        load_balancer.add_target(node_group.auto_scaling_group)

    return construct_template(build)


@functools.cache
def log_bucket_template() -> Template:
    def build(stack: Stack) -> None:
        target = LogBucket(stack, "ServerAccessLogs")
        LogBucket(stack, "Logs", server_access_logs_bucket=target.bucket, server_access_logs_prefix="logs/")

    return construct_template(build)
