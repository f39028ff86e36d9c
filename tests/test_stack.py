"""The whole stack: every role of the original design, wiring, tags and outputs."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk.assertions import Match
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # type: ignore[import-untyped]

from alchemy_constructs.node_bootstrap import BUNDLE_ENVIRONMENT
from alchemy_constructs.node_bundle import NodeBundle
from alchemy_constructs.node_group import READY_BOOT_MARGIN
from alchemy_stack.settings import SettingsError
from tests.synth import CDK_CONTEXT, TEST_ACCOUNT, TEST_REGION, VARIANTS, Synthesis, synthesize

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def test_every_role_of_the_original_design_is_there() -> None:
    template = synthesize().template
    for resource_type, count in {
        "AWS::EC2::VPC": 1,
        "AWS::EC2::Subnet": 4,
        "AWS::EC2::InternetGateway": 1,
        "AWS::EC2::VPCGatewayAttachment": 1,
        "AWS::EC2::Instance": 1,
        "AWS::EC2::EIP": 1,
        "AWS::ElasticLoadBalancing::LoadBalancer": 1,
        "AWS::AutoScaling::AutoScalingGroup": 1,
        "AWS::EC2::NatGateway": 0,
    }.items():
        template.resource_count_is(resource_type, count)


def test_node_group_is_three_nodes_by_default() -> None:
    synthesize().template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "3", "MaxSize": "3", "DesiredCapacity": "3"}
    )


def test_settings_reach_the_node_group() -> None:
    synthesis = synthesize(**VARIANTS["own_nodes"])  # 5 to 8 m6i.large nodes with 80 GB volumes
    synthesis.template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "5", "MaxSize": "8", "DesiredCapacity": "5"}
    )
    synthesis.template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {
                    "InstanceType": "m6i.large",
                    "BlockDeviceMappings": [Match.object_like({"Ebs": Match.object_like({"VolumeSize": 80})})],
                }
            )
        },
    )


def test_settings_reach_the_network() -> None:
    synthesis = synthesize(**VARIANTS["own_network"])  # vpc_cidr 10.20.0.0/16, 3 AZs, a t3.small NAT in each
    synthesis.template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.20.0.0/16"})
    synthesis.template.resource_count_is("AWS::EC2::Subnet", 6)
    synthesis.template.resource_count_is("AWS::EC2::Instance", 3)
    synthesis.template.has_resource_properties("AWS::EC2::Instance", {"InstanceType": "t3.small"})


def test_agnostic_stack_picks_azs_at_deploy_time() -> None:
    subnets = synthesize(**VARIANTS["own_network"]).template.find_resources("AWS::EC2::Subnet").values()
    zones = {str(subnet["Properties"]["AvailabilityZone"]) for subnet in subnets}
    assert zones == {str({"Fn::Select": [index, {"Fn::GetAZs": ""}]}) for index in range(3)}


def test_bound_stack_uses_the_region_zones() -> None:
    synthesis = synthesize(**VARIANTS["account_bound"])  # the CLI's cached lookup: eu-west-1a, b and c
    zones = {
        s["Properties"]["AvailabilityZone"] for s in synthesis.template.find_resources("AWS::EC2::Subnet").values()
    }
    assert zones == {"eu-west-1a", "eu-west-1b"}


def test_az_count_above_what_the_region_has_is_refused() -> None:
    zones_key = f"availability-zones:account={TEST_ACCOUNT}:region={TEST_REGION}"
    with pytest.raises(SettingsError, match=r"az_count=3: must be from 2 to 2, the AZs region eu-west-1 has"):
        synthesize(account=TEST_ACCOUNT, region=TEST_REGION, az_count=3, **{zones_key: ["eu-west-1a", "eu-west-1b"]})


def is_taggable(resource_type: str) -> bool:
    """What CloudFormation's own resource schema (shipped with cfn-lint) says about the type."""
    if resource_type.startswith("Custom::"):
        return False
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return bool(schema.get("tagging", {}).get("taggable", "Tags" in schema.get("properties", {})))


def cluster_tag(resource: Mapping[str, Any]) -> str | None:
    properties = resource.get("Properties", {})
    if resource["Type"] == "AWS::EC2::LaunchTemplate":
        (specification,) = properties.get("TagSpecifications", [{"Tags": []}])
        tags = specification["Tags"]
    else:
        tags = properties.get("Tags", [])
    if isinstance(tags, dict):  # e.g. AWS::SSM::Parameter takes a map
        return tags.get("Cluster")
    # Auto Scaling tags carry PropagateAtLaunch; all others are Key/Value pairs.
    return next((tag["Value"] for tag in tags if tag["Key"] == "Cluster"), None)


@pytest.mark.parametrize(
    ("variant", "renamed"), [("defaults", {"cluster_name": "staging"}), ("production", {}), ("account_bound", {})]
)
def test_every_taggable_resource_carries_the_cluster_tag(variant: str, renamed: dict[str, str]) -> None:
    """Over the whole template, by what each type accepts, including CDK's custom-resource providers. The tag
    follows the setting (staging); the other variants, as the rule packs see them, keep cdk.json's name."""
    cluster_name = renamed.get("cluster_name", CDK_CONTEXT["cluster_name"])
    template_json = synthesize(**VARIANTS[variant], **renamed).template_json
    untagged = [
        f"{logical_id} ({resource['Type']})"
        for logical_id, resource in template_json["Resources"].items()
        if is_taggable(resource["Type"]) and cluster_tag(resource) != cluster_name
    ]
    assert untagged == []


def test_launch_templates_carry_the_cluster_tag_too() -> None:
    """Not taggable as a CloudFormation resource, but the EC2 object takes tags at creation."""
    resources = synthesize(cluster_name="staging").template.find_resources("AWS::EC2::LaunchTemplate").values()
    assert [cluster_tag(resource) for resource in resources] == ["staging"] * len(resources)


def test_nodes_and_nat_are_named_after_the_cluster() -> None:
    template = synthesize(cluster_name="staging").template
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup",
        {"Tags": Match.array_with([{"Key": "Name", "Value": "staging-node", "PropagateAtLaunch": True}])},
    )
    template.has_resource_properties(
        "AWS::EC2::Instance", {"Tags": Match.array_with([{"Key": "Name", "Value": "staging-nat"}])}
    )


def test_stack_is_named_after_the_cluster() -> None:
    assert synthesize(cluster_name="staging").stack.stack_name == "staging"


def test_user_data_is_the_rendered_cloud_config() -> None:
    synthesis = synthesize()
    (data,) = [
        r["Properties"]["LaunchTemplateData"]
        for r in synthesis.template.find_resources("AWS::EC2::LaunchTemplate").values()
        if "UserData" in r["Properties"]["LaunchTemplateData"]
    ]
    parts = data["UserData"]["Fn::Base64"]["Fn::Join"][1]
    assert parts[0].startswith("#cloud-config\n")
    assert {"Ref": "AWS::Region"} in parts
    assert "CLUSTER_NAME=alchemy\n" in "".join(p for p in parts if isinstance(p, str))


def node_policy_statements(synthesis: Synthesis) -> list[Any]:
    """Statements of the managed policies attached to the role EC2 assumes: the nodes'."""
    node_roles = [
        {"Ref": logical_id}
        for logical_id, role in synthesis.template.find_resources("AWS::IAM::Role").items()
        if "ec2.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    return [
        statement
        for policy in synthesis.template.find_resources("AWS::IAM::ManagedPolicy").values()
        if any(role in node_roles for role in policy["Properties"].get("Roles", []))
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_node_bundle_is_a_file_asset_named_in_the_user_data() -> None:
    synthesis = synthesize()
    (asset,) = [
        a for a in synthesis.stack.node.find_all() if isinstance(a, s3_assets.Asset) and "NodeBundle" in a.node.path
    ]
    (data,) = [
        r["Properties"]["LaunchTemplateData"]["UserData"]
        for r in synthesis.template.find_resources("AWS::EC2::LaunchTemplate").values()
        if "UserData" in r["Properties"]["LaunchTemplateData"]
    ]
    text = "".join(p for p in data["Fn::Base64"]["Fn::Join"][1] if isinstance(p, str))
    assert f"/{asset.s3_object_key}\n" in text
    assert re.search(r"NODE_BUNDLE_SHA256=[0-9a-f]{64}\n", text)


def test_nodes_may_read_their_bundle_object_and_nothing_else_of_the_assets_bucket() -> None:
    statements = [s for s in node_policy_statements(synthesize()) if "s3:GetObject" in s["Action"]]
    (statement,) = statements
    assert statement["Action"] == "s3:GetObject"
    resource = json.dumps(statement["Resource"])
    assert "cdk-hnb659fds-assets" in resource
    assert re.search(r"/[0-9a-f]{64}\.gz", resource)


def test_the_same_sources_give_the_same_bundle_object() -> None:
    keys = {
        asset.s3_object_key
        for synthesis in (synthesize(), synthesize(**VARIANTS["own_network"]))
        for asset in synthesis.stack.node.find_all()
        if isinstance(asset, s3_assets.Asset) and "NodeBundle" in asset.node.path
    }
    assert len(keys) == 1


def test_a_changed_bundle_changes_the_launch_template() -> None:
    def user_data(**settings: object) -> str:
        synthesis = synthesize(**settings)
        (data,) = [
            r["Properties"]["LaunchTemplateData"]["UserData"]
            for r in synthesis.template.find_resources("AWS::EC2::LaunchTemplate").values()
            if "UserData" in r["Properties"]["LaunchTemplateData"]
        ]
        return json.dumps(data)

    # hello_world_instances (2 by default) changes only what the bundle places on a node.
    assert user_data() != user_data(hello_world_instances=3)


def test_outputs_elb_url_over_http_without_a_certificate() -> None:
    synthesize().template.has_output(
        "ELBURL", {"Value": {"Fn::Join": ["", ["http://", {"Fn::GetAtt": [Match.any_value(), "DNSName"]}]]}}
    )


def test_outputs_elb_url_over_https_with_a_certificate() -> None:
    synthesize(certificate_arn=CERTIFICATE).template.has_output(
        "ELBURL", {"Value": {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [Match.any_value(), "DNSName"]}]]}}
    )


def test_outputs_the_nat_public_address() -> None:
    synthesize().template.has_output(
        "NATIPAddress", {"Value": {"Fn::GetAtt": [Match.any_value(), "PublicIp"]}, "Description": Match.any_value()}
    )


def test_outputs_every_nat_address_with_one_nat_per_az() -> None:
    outputs = synthesize(**VARIANTS["own_network"]).template_json["Outputs"]
    assert {"NATIPAddress", "NATIPAddress2", "NATIPAddress3"} <= set(outputs)


def test_outputs_the_node_group_name_and_a_session_manager_command() -> None:
    template = synthesize().template
    template.has_output("NodeGroupName", {"Value": {"Ref": Match.any_value()}})
    command = template.find_outputs("NodeShellCommand")["NodeShellCommand"]["Value"]["Fn::Join"][1]
    assert command[0].startswith("aws ssm start-session --region ")
    assert any("describe-auto-scaling-groups" in part for part in command if isinstance(part, str))


def test_every_output_is_described() -> None:
    for output in synthesize().template_json["Outputs"].values():
        assert output.get("Description")


def node_role_statements() -> list[dict]:
    template = synthesize().template
    (role_id,) = [
        key for key, role in template.find_resources("AWS::IAM::Role").items() if key.startswith("NodeGroupRole")
    ]
    policies = template.find_resources("AWS::IAM::ManagedPolicy")
    return [
        statement
        for policy in policies.values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_node_role_reads_this_clusters_five_secrets_and_no_other() -> None:
    template = synthesize().template
    secrets = set(template.find_resources("AWS::SecretsManager::Secret"))
    (read,) = [s for s in node_role_statements() if "secretsmanager:GetSecretValue" in s["Action"]]
    assert read["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert {resource["Ref"] for resource in read["Resource"]} == secrets


def test_node_role_has_only_discovery_session_manager_and_ecr_login_on_resource_star() -> None:
    unscoped = sorted(
        ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for s in node_role_statements()
        if s["Resource"] == "*"
    )
    assert unscoped == [
        [
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "ec2:DescribeInstances",
        ],
        ["ecr:GetAuthorizationToken"],
        [
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ],
    ]


def test_node_group_waits_for_the_nat_instance_and_the_private_default_routes() -> None:
    """A node's first image pull goes through the NAT; a group created before it fails its first boot."""
    template = synthesize().template_json["Resources"]
    (asg,) = [r for r in template.values() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    nat = {key for key, r in template.items() if r["Type"] == "AWS::EC2::Instance"}
    private_routes = {
        key for key, r in template.items() if r["Type"] == "AWS::EC2::Route" and key.startswith("NetworkPrivate")
    }
    assert len(private_routes) == 2
    assert nat | private_routes <= set(asg["DependsOn"])


def test_node_group_waits_for_every_nat_instance_with_one_per_az() -> None:
    template = synthesize(**VARIANTS["own_network"]).template_json["Resources"]
    (asg,) = [r for r in template.values() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    nat = {key for key, r in template.items() if r["Type"] == "AWS::EC2::Instance"}
    assert len(nat) == 3
    assert nat <= set(asg["DependsOn"])


def test_node_role_signals_only_its_own_stack() -> None:
    signals = [s for s in node_role_statements() if s["Action"] == "cloudformation:SignalResource"]
    assert signals == [
        {"Action": "cloudformation:SignalResource", "Effect": "Allow", "Resource": {"Ref": "AWS::StackId"}}
    ]


def test_node_role_only_puts_snapshots_under_the_cluster_prefix() -> None:
    puts = [s for s in node_role_statements() if "s3:PutObject" in str(s["Action"])]
    assert [s["Action"] for s in puts] == ["s3:PutObject", "s3:PutObject"]
    assert {s["Resource"]["Fn::Join"][1][1] for s in puts} == {"/alchemy/etcd/*"}


def test_node_group_creation_and_updates_wait_for_ready_signals() -> None:
    synthesize().template.has_resource(
        "AWS::AutoScaling::AutoScalingGroup",
        {
            "CreationPolicy": {"ResourceSignal": {"Count": 3, "Timeout": "PT20M"}},
            "UpdatePolicy": {"AutoScalingRollingUpdate": Match.object_like({"WaitOnResourceSignals": True})},
        },
    )


def node_environment(synthesis: Synthesis) -> dict[str, str]:
    """The literal KEY=value lines a node's /etc/environment is made of: the user data's, then the
    bundle's own environment file (values known at synth, such as ROUTER_PORT)."""
    (data,) = [
        r["Properties"]["LaunchTemplateData"]["UserData"]
        for r in synthesis.template_json["Resources"].values()
        if r["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in r["Properties"]["LaunchTemplateData"]
    ]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in data["Fn::Base64"]["Fn::Join"][1])
    (bundle,) = [c for c in synthesis.stack.node.find_all() if isinstance(c, NodeBundle)]
    with tarfile.open(bundle.archive_path) as archive:
        member = archive.extractfile(BUNDLE_ENVIRONMENT.lstrip("/"))
        assert member is not None
        text += "\n" + member.read().decode()
    return dict(re.findall(r"^\s*([A-Z_]+)=(\S+)$", text, re.MULTILINE))


def test_the_router_port_the_elb_sends_to_is_the_one_the_nodes_listen_on() -> None:
    """One constant feeds both: the listeners' and health check's instance port, and ROUTER_PORT on the node."""
    synthesis = synthesize()
    (elb,) = synthesis.template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer").values()
    port = node_environment(synthesis)["ROUTER_PORT"]
    assert {listener["InstancePort"] for listener in elb["Properties"]["Listeners"]} == {port}
    assert elb["Properties"]["HealthCheck"]["Target"].startswith(f"HTTP:{port}/")


def test_nodes_write_their_snapshots_under_the_prefix_the_bucket_policy_guards() -> None:
    """One value: the write-once policy's prefix and ETCD_SNAPSHOT_PREFIX on the node, named after the cluster."""
    synthesis = synthesize(cluster_name="staging")
    prefix = node_environment(synthesis)["ETCD_SNAPSHOT_PREFIX"]
    assert prefix == synthesis.stack.etcd_snapshots.prefix == "staging/etcd/"
    (policy,) = synthesis.template.find_resources(
        "AWS::S3::BucketPolicy", {"Properties": {"Bucket": {"Ref": Match.string_like_regexp("EtcdSnapshots")}}}
    ).values()
    guarded = json.dumps(policy["Properties"]["PolicyDocument"])
    assert f"/{prefix}*" in guarded


def test_a_node_gives_up_before_cloudformation_stops_waiting_for_it() -> None:
    """READY_TIMEOUT on the node is the group's signal timeout less the boot margin, from one setting."""
    synthesis = synthesize()
    (asg,) = synthesis.template.find_resources("AWS::AutoScaling::AutoScalingGroup").values()
    timeout = re.fullmatch(r"PT(\d+)M", asg["CreationPolicy"]["ResourceSignal"]["Timeout"])
    assert timeout is not None
    expected = int(timeout[1]) * 60 - READY_BOOT_MARGIN.to_seconds()
    assert int(node_environment(synthesis)["READY_TIMEOUT"]) == expected


def test_secrets_are_generated_by_secrets_manager() -> None:
    template = synthesize().template
    template.resource_count_is("AWS::SecretsManager::Secret", 5)
    for secret in template.find_resources("AWS::SecretsManager::Secret").values():
        generated = secret["Properties"]["GenerateSecretString"]
        assert generated["ExcludePunctuation"] is True
        assert "SecretString" not in secret["Properties"]


def test_etcd_snapshots_go_to_an_encrypted_tls_only_bucket() -> None:
    synthesize().template.resource_count_is("AWS::S3::Bucket", 3)


PRODUCTION = {"profile": "production", "certificate_arn": CERTIFICATE}


def test_production_stack_is_protected_from_termination() -> None:
    assert synthesize(**PRODUCTION).stack.termination_protection
    assert not synthesize().stack.termination_protection


def test_production_serves_https_only() -> None:
    (elb,) = synthesize(**PRODUCTION).template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer").values()
    assert [listener["LoadBalancerPort"] for listener in elb["Properties"]["Listeners"]] == ["443"]


def test_production_has_a_nat_instance_per_az() -> None:
    synthesize(**PRODUCTION).template.resource_count_is("AWS::EC2::Instance", 3)


def test_production_keeps_logs_and_snapshots_for_audits() -> None:
    template = synthesize(**PRODUCTION).template
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 400})
    buckets = template.find_resources("AWS::S3::Bucket").values()
    expirations = [b["Properties"]["LifecycleConfiguration"]["Rules"][0].get("ExpirationInDays") for b in buckets]
    assert expirations.count(400) == 2
