"""The real CDK CLI against a fresh local emulator: bootstrap, deploy, change, diff, redeploy, destroy.

Each phase is a module fixture that runs its CLI commands once and records what the emulator
holds right then, so every test reads a snapshot of one moment and checks one behaviour.
Run with ``make integration`` (``pytest -m integration``); the default run leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alchemy_tools import cdk_diff_comment, local_aws, local_emulator
from alchemy_tools.local_deploy import ROOT, TEMPLATE, CdkResult, Destroyed, LocalCdk
from tests.integration.conftest import CLI_TIMINGS

pytestmark = pytest.mark.integration

STACK = "alchemy"
FIRST = {"node_count": 3}
CHANGED = {"node_count": 4}
REPLACING = {**CHANGED, "vpc_cidr": "10.1.0.0/16"}
BOOTSTRAP_ROLE_PREFIX = "cdk-hnb659fds-"


@dataclass(frozen=True)
class Observed:
    """What the emulator holds after one phase, read through boto3."""

    template: dict[str, Any]
    outputs: dict[str, str]
    physical_ids: dict[str, str]
    """Logical id -> physical id of every stack resource."""
    vpc: dict[str, Any]
    subnets: list[dict[str, Any]]
    route_tables: list[dict[str, Any]]
    load_balancer: dict[str, Any]
    auto_scaling_group: dict[str, Any]
    nat_instance_id: str

    def logical_ids(self, resource_type: str) -> list[str]:
        return [name for name, r in self.template["Resources"].items() if r["Type"] == resource_type]

    def subnets_of_type(self, subnet_type: str) -> list[dict[str, Any]]:
        return [s for s in self.subnets if {"Key": "aws-cdk:subnet-type", "Value": subnet_type} in s.get("Tags", [])]

    def route_table_of(self, subnet_id: str) -> dict[str, Any]:
        """The route table the stack associates with ``subnet_id``.

        The association is read from the stack, not from DescribeRouteTables: moto keeps
        CloudFormation-made subnet associations out of that answer (an emulator gap).
        """
        (table_id,) = [
            self.physical_ids[association["Properties"]["RouteTableId"]["Ref"]]
            for association in self.template["Resources"].values()
            if association["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
            and self.physical_ids[association["Properties"]["SubnetId"]["Ref"]] == subnet_id
        ]
        (table,) = [t for t in self.route_tables if t["RouteTableId"] == table_id]
        return table


def observe(cdk: LocalCdk, assembly: Path) -> Observed:
    template = json.loads((assembly / TEMPLATE).read_text())
    cloudformation, ec2 = cdk.client("cloudformation"), cdk.client("ec2")
    stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    physical_ids = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK)
        for r in page["StackResourceSummaries"]
    }
    resources = template["Resources"]
    (vpc_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::EC2::VPC"]
    (elb_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::ElasticLoadBalancing::LoadBalancer"]
    (asg_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    (nat_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::EC2::Instance"]
    vpc_id = physical_ids[vpc_name]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    return Observed(
        template=template,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        physical_ids=physical_ids,
        vpc=ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0],
        subnets=ec2.describe_subnets(Filters=in_vpc)["Subnets"],
        route_tables=ec2.describe_route_tables(Filters=in_vpc)["RouteTables"],
        load_balancer=cdk.client("elb").describe_load_balancers(LoadBalancerNames=[physical_ids[elb_name]])[
            "LoadBalancerDescriptions"
        ][0],
        auto_scaling_group=cdk.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[physical_ids[asg_name]]
        )["AutoScalingGroups"][0],
        nat_instance_id=physical_ids[nat_name],
    )


@pytest.fixture(scope="module")
def cdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCdk]:
    workdir = tmp_path_factory.mktemp("local-deploy")
    with local_aws.LocalAws.on_free_port(workdir) as server:
        cdk = LocalCdk(server, workdir)
        yield cdk
        CLI_TIMINGS.extend(cdk.timings)


@pytest.fixture(scope="module")
def node_image(cdk: LocalCdk) -> str:
    cdk.bootstrap()
    return cdk.register_node_image()


@pytest.fixture(scope="module")
def first(cdk: LocalCdk, node_image: str) -> Observed:
    assembly, _ = cdk.deploy(FIRST, node_image)
    return observe(cdk, assembly)


@pytest.fixture(scope="module")
def change_diff(cdk: LocalCdk, first: Observed) -> CdkResult:
    return cdk.diff(CHANGED)


@pytest.fixture(scope="module")
def second(cdk: LocalCdk, node_image: str, change_diff: CdkResult) -> Observed:
    assembly, _ = cdk.deploy(CHANGED, node_image)
    return observe(cdk, assembly)


@pytest.fixture(scope="module")
def no_change_diff(cdk: LocalCdk, second: Observed) -> CdkResult:
    return cdk.diff(CHANGED, fail=True)


@pytest.fixture(scope="module")
def replacement_diff(cdk: LocalCdk, second: Observed) -> CdkResult:
    return cdk.diff(REPLACING)


@dataclass(frozen=True)
class Leftovers:
    stacks: list[str]
    vpcs: list[str]
    route_tables: list[str]
    security_groups: list[str]
    internet_gateways: list[str]
    addresses: list[str]
    running_instances: list[str]
    launch_templates: list[str]
    load_balancers: list[str]
    auto_scaling_groups: list[str]
    roles: list[str]
    instance_profiles: list[str]
    topics: list[str]
    log_groups: list[str]
    flow_logs: list[str]
    buckets: list[str]
    managed_policies: list[str]
    secrets: list[str]


@dataclass(frozen=True)
class AfterDestroy:
    deployed: Observed
    """The stack as it was before cdk destroy."""
    leftovers: Leftovers
    outcome: Destroyed


@pytest.fixture(scope="module")
def destroyed(cdk: LocalCdk, second: Observed, no_change_diff: CdkResult, replacement_diff: CdkResult) -> AfterDestroy:
    outcome = cdk.destroy(CHANGED)
    ec2, iam = cdk.client("ec2"), cdk.client("iam")
    non_default_vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    default_vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]}
    leftovers = Leftovers(
        stacks=[
            s["StackName"]
            for s in cdk.client("cloudformation").list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE" and s["StackName"] != "CDKToolkit"
        ],
        vpcs=non_default_vpcs,
        route_tables=[
            t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"] if t["VpcId"] not in default_vpcs
        ],
        security_groups=[
            g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"] if g.get("VpcId") not in default_vpcs
        ],
        internet_gateways=[g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]],
        addresses=[a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]],
        running_instances=[
            i["InstanceId"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
        launch_templates=[t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]],
        load_balancers=[
            b["LoadBalancerName"] for b in cdk.client("elb").describe_load_balancers()["LoadBalancerDescriptions"]
        ],
        auto_scaling_groups=[
            g["AutoScalingGroupName"]
            for g in cdk.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        ],
        roles=[r["RoleName"] for r in iam.list_roles()["Roles"] if not r["RoleName"].startswith(BOOTSTRAP_ROLE_PREFIX)],
        instance_profiles=[p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]],
        topics=[t["TopicArn"] for t in cdk.client("sns").list_topics()["Topics"]],
        log_groups=[g["logGroupName"] for g in cdk.client("logs").describe_log_groups()["logGroups"]],
        flow_logs=[f["FlowLogId"] for f in ec2.describe_flow_logs()["FlowLogs"]],
        buckets=[
            b["Name"] for b in cdk.client("s3").list_buckets()["Buckets"] if not b["Name"].startswith("cdk-hnb659fds-")
        ],
        managed_policies=[p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]],
        secrets=[s["ARN"] for s in cdk.client("secretsmanager").list_secrets()["SecretList"]],
    )
    return AfterDestroy(second, leftovers, outcome)


# After the first deploy: what was deployed is what the stack describes.


def test_the_vpc_has_the_configured_range(first: Observed) -> None:
    assert first.vpc["CidrBlock"] == "10.0.0.0/16"


def test_each_az_has_one_public_and_one_private_subnet(first: Observed) -> None:
    public = sorted(s["AvailabilityZone"] for s in first.subnets_of_type("Public"))
    private = sorted(s["AvailabilityZone"] for s in first.subnets_of_type("Private"))
    assert (len(set(public)), public) == (2, private)


def test_private_subnets_route_to_the_internet_through_the_nat_instance(first: Observed) -> None:
    targets = {
        route.get("InstanceId")
        for subnet in first.subnets_of_type("Private")
        for route in first.route_table_of(subnet["SubnetId"])["Routes"]
        if route.get("DestinationCidrBlock") == "0.0.0.0/0"
    }
    assert targets == {first.nat_instance_id}


def test_public_subnets_route_to_the_internet_gateway(first: Observed) -> None:
    gateways = {
        route.get("GatewayId", "")
        for subnet in first.subnets_of_type("Public")
        for route in first.route_table_of(subnet["SubnetId"])["Routes"]
        if route.get("DestinationCidrBlock") == "0.0.0.0/0"
    }
    assert len(gateways) == 1
    assert gateways.pop().startswith("igw-")


def test_the_elb_forwards_http_80_to_the_router_port(first: Observed) -> None:
    listeners = [d["Listener"] for d in first.load_balancer["ListenerDescriptions"]]
    assert [(x["Protocol"], x["LoadBalancerPort"], x["InstanceProtocol"], x["InstancePort"]) for x in listeners] == [
        ("HTTP", 80, "HTTP", 8080)
    ]


def test_the_elb_health_check_is_the_one_the_template_asks_for(first: Observed) -> None:
    (elb,) = [r for r in first.template["Resources"].values() if r["Type"] == "AWS::ElasticLoadBalancing::LoadBalancer"]
    assert (
        first.load_balancer["HealthCheck"]["Target"]
        == elb["Properties"]["HealthCheck"]["Target"]
        == "HTTP:8080/_alchemy/health"
    )


def test_the_elb_is_internet_facing(first: Observed) -> None:
    assert first.load_balancer["Scheme"] == "internet-facing"


def test_the_node_group_has_node_count_instances(first: Observed) -> None:
    group = first.auto_scaling_group
    assert (group["DesiredCapacity"], group["MinSize"], group["MaxSize"], len(group["Instances"])) == (3, 3, 3, 3)


def test_every_node_is_registered_with_the_elb(first: Observed) -> None:
    nodes = {i["InstanceId"] for i in first.auto_scaling_group["Instances"]}
    assert {i["InstanceId"] for i in first.load_balancer["Instances"]} == nodes


def test_the_elb_url_output_is_the_elb(first: Observed) -> None:
    assert first.outputs["ELBURL"] == f"http://{first.load_balancer['DNSName']}"


def test_the_nat_address_output_is_the_nat_instances_elastic_ip(first: Observed, cdk: LocalCdk) -> None:
    addresses = cdk.client("ec2").describe_addresses(PublicIps=[first.outputs["NATIPAddress"]])["Addresses"]
    assert [a["InstanceId"] for a in addresses] == [first.nat_instance_id]


def test_the_node_group_output_is_the_group(first: Observed) -> None:
    assert first.outputs["NodeGroupName"] == first.auto_scaling_group["AutoScalingGroupName"]


def test_the_shell_command_output_targets_the_group(first: Observed) -> None:
    assert (
        f"--auto-scaling-group-names {first.auto_scaling_group['AutoScalingGroupName']} "
        in (first.outputs["NodeShellCommand"])
    )


# A settings change: the diff shows exactly that change, and the comment lets it pass.


def test_the_diff_lists_exactly_the_resources_the_change_touches(
    change_diff: CdkResult, first: Observed, second: Observed
) -> None:
    before, after = first.template["Resources"], second.template["Resources"]
    touched = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    (diff,) = cdk_diff_comment.parse(change_diff.output)
    assert {change.logical_id for change in diff.resources} == touched


def test_the_diff_shows_the_node_group_growing_from_3_to_4(change_diff: CdkResult) -> None:
    (diff,) = cdk_diff_comment.parse(change_diff.output)
    lines = [line.strip(" │├└─") for line in diff.text.splitlines()]
    start = lines.index("[~] DesiredCapacity")
    assert lines[start : start + 3] == ["[~] DesiredCapacity", "[-] 3", "[+] 4"]


def test_the_settings_change_replaces_nothing(change_diff: CdkResult) -> None:
    (diff,) = cdk_diff_comment.parse(change_diff.output)
    assert [(c.logical_id, c.impact) for c in diff.resources if c.impact] == []


def comment_on(result: CdkResult, policy: cdk_diff_comment.Policy | None = None) -> str:
    (diff,) = cdk_diff_comment.parse(result.output)
    verdict = cdk_diff_comment.decide([diff], policy or cdk_diff_comment.Policy()).for_stack(STACK)
    return cdk_diff_comment.render_comment(diff, verdict, cdk_diff_comment.RunContext.local(ROOT))


def test_the_comment_lets_the_settings_change_pass(change_diff: CdkResult) -> None:
    diffs = cdk_diff_comment.parse(change_diff.output)
    assert not cdk_diff_comment.decide(diffs, cdk_diff_comment.Policy()).failed


def test_the_comment_says_every_node_will_be_replaced(change_diff: CdkResult) -> None:
    assert "**Every node will be replaced, one at a time**" in comment_on(change_diff)


def test_the_comment_names_the_changed_broker_setting(change_diff: CdkResult) -> None:
    assert "+cluster_formation.target_cluster_size_hint = 4" in comment_on(change_diff)


def test_the_second_deploy_resizes_the_group(second: Observed) -> None:
    group = second.auto_scaling_group
    assert (group["DesiredCapacity"], len(group["Instances"])) == (4, 4)


def test_after_the_second_deploy_every_node_is_registered(second: Observed) -> None:
    nodes = {i["InstanceId"] for i in second.auto_scaling_group["Instances"]}
    assert {i["InstanceId"] for i in second.load_balancer["Instances"]} == nodes


def test_diff_fail_finds_no_difference_after_the_deploy(no_change_diff: CdkResult) -> None:
    assert (no_change_diff.returncode, "There were no differences" in no_change_diff.output) == (0, True)


# A replacement: the comment flags it and blocks it unless allowed.


def test_the_comment_blocks_replacing_the_vpc(replacement_diff: CdkResult) -> None:
    diffs = cdk_diff_comment.parse(replacement_diff.output)
    verdict = cdk_diff_comment.decide(diffs, cdk_diff_comment.Policy()).for_stack(STACK)
    assert "AWS::EC2::VPC" in {c.resource_type for c in verdict.blocking}


def test_acknowledging_the_replacements_lets_them_pass(replacement_diff: CdkResult) -> None:
    diffs = cdk_diff_comment.parse(replacement_diff.output)
    acknowledged = frozenset((STACK, c.logical_id) for d in diffs for c in d.destructive_changes)
    assert not cdk_diff_comment.decide(diffs, cdk_diff_comment.Policy(acknowledged=acknowledged)).failed


def test_the_replacement_comment_flags_the_security_group_change(replacement_diff: CdkResult) -> None:
    assert "🔐 **Security groups:" in comment_on(replacement_diff)


# After cdk destroy: nothing of the stack is left but what it retains on purpose.


def test_the_stack_is_gone(destroyed: AfterDestroy) -> None:
    assert destroyed.leftovers.stacks == []


def test_no_network_is_left(destroyed: AfterDestroy) -> None:
    leftovers = destroyed.leftovers
    assert (leftovers.vpcs, leftovers.internet_gateways, leftovers.security_groups, leftovers.flow_logs) == (
        [],
        [],
        [],
        [],
    )


def test_no_route_table_is_left(destroyed: AfterDestroy) -> None:
    assert destroyed.leftovers.route_tables == []


def test_no_compute_is_left(destroyed: AfterDestroy) -> None:
    leftovers = destroyed.leftovers
    assert (
        leftovers.running_instances,
        leftovers.addresses,
        leftovers.launch_templates,
        leftovers.auto_scaling_groups,
        leftovers.load_balancers,
    ) == ([], [], [], [], [])


def test_no_role_topic_or_log_group_is_left(destroyed: AfterDestroy) -> None:
    leftovers = destroyed.leftovers
    assert (leftovers.roles, leftovers.instance_profiles, leftovers.topics, leftovers.log_groups) == ([], [], [], [])


MOTO_LOSES_THE_NODE_POLICY = pytest.mark.xfail(
    strict=False,
    reason="seen once the node group depends on its managed policies: moto's ListStackResources omits "
    "NodeGroup/Policy although it creates it, so its stack deletion and local-destroy's cleanup (which go by "
    "the stack's resources) leave that one policy behind; not yet settled whether a moto gap or the emulator's",
)


@MOTO_LOSES_THE_NODE_POLICY
def test_no_managed_policy_is_left(destroyed: AfterDestroy) -> None:
    assert destroyed.leftovers.managed_policies == []


def test_no_secret_is_left(destroyed: AfterDestroy) -> None:
    """Holds trivially on moto, which never creates the stack's secrets (local_emulator.NOT_MODELLED_TYPES)."""
    assert destroyed.leftovers.secrets == []


def test_destroy_reports_nothing_of_the_stack_left(destroyed: AfterDestroy) -> None:
    assert (destroyed.outcome.clean, destroyed.outcome.remaining) == (True, {})


def test_only_the_retained_log_buckets_stay(destroyed: AfterDestroy) -> None:
    deployed, leftovers = destroyed.deployed, destroyed.leftovers
    retained = {
        deployed.physical_ids[name]
        for name, resource in deployed.template["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket" and resource.get("DeletionPolicy") == "Retain"
    }
    assert retained
    assert sorted(leftovers.buckets) == sorted(retained)


@MOTO_LOSES_THE_NODE_POLICY
def test_the_workarounds_touched_only_what_moto_cannot_delete(destroyed: AfterDestroy) -> None:
    """moto's stack deletion leaves route tables, Elastic IPs and internet gateways; when it
    learns to delete one of them, this fails and its workaround in local_emulator can go."""
    deployed = destroyed.deployed
    worked_around = {kind: sorted(ids) for kind, ids in destroyed.outcome.worked_around.items()}
    worked_around.pop("AWS::IAM::Role")
    assert worked_around == {
        kind: sorted(deployed.physical_ids[name] for name in deployed.logical_ids(kind))
        for kind in local_emulator.UNDELETED_TYPES
    }
