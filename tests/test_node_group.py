"""Node group: ASG from a launch template, its security, health and rollout behaviour."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match, Template

from alchemy_constructs.node_group import CLUSTER_PORTS
from tests.builders import node_group_template


@pytest.fixture(scope="module")
def template() -> Template:
    return node_group_template()


def launch_template_data(template: Template) -> dict:
    (resource,) = template.find_resources("AWS::EC2::LaunchTemplate").values()
    return resource["Properties"]["LaunchTemplateData"]


def security_group_id(template: Template, description_start: str) -> str:
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    (group_id,) = [
        key for key, value in groups.items() if value["Properties"]["GroupDescription"].startswith(description_start)
    ]
    return group_id


def test_asg_size_defaults_to_desired_for_min_and_max(template: Template) -> None:
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "3", "MaxSize": "3", "DesiredCapacity": "3"}
    )


def test_asg_size_follows_min_and_max() -> None:
    node_group_template(desired=3, minimum=2, maximum=6).has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "2", "MaxSize": "6", "DesiredCapacity": "3"}
    )


@pytest.mark.parametrize(("desired", "minimum", "maximum"), [(3, 4, 5), (3, 1, 2), (0, None, None)])
def test_inconsistent_capacity_is_refused(desired: int, minimum: int | None, maximum: int | None) -> None:
    with pytest.raises(ValueError, match=r"capacity must satisfy 1 <= min <= desired <= max; received"):
        node_group_template(desired=desired, minimum=minimum, maximum=maximum)


def test_asg_lives_in_the_private_subnets(template: Template) -> None:
    private = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}])}},
    )
    (asg,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup").values()
    assert sorted(ref["Ref"] for ref in asg["Properties"]["VPCZoneIdentifier"]) == sorted(private)


def test_asg_registers_with_the_load_balancer(template: Template) -> None:
    (elb_id,) = template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer")
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"LoadBalancerNames": [{"Ref": elb_id}]})


def test_asg_replaces_nodes_that_fail_elb_health_after_a_grace_period(template: Template) -> None:
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"HealthCheckType": "ELB", "HealthCheckGracePeriod": 300}
    )


def test_launch_template_change_rolls_one_node_at_a_time(template: Template) -> None:
    template.has_resource(
        "AWS::AutoScaling::AutoScalingGroup",
        {
            "UpdatePolicy": {
                "AutoScalingRollingUpdate": Match.object_like({"MaxBatchSize": 1, "MinInstancesInService": 2})
            }
        },
    )


def test_scaling_events_are_published_to_an_encrypted_topic(template: Template) -> None:
    topic_id = Capture()
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup",
        {"NotificationConfigurations": [Match.object_like({"TopicARN": {"Ref": topic_id}})]},
    )
    topic = template.find_resources("AWS::SNS::Topic")[topic_id.as_string()]
    assert "alias/aws/sns" in str(topic["Properties"]["KmsMasterKeyId"])


def test_notifications_topic_denies_plain_http(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_launch_template_boots_the_given_image_and_type(template: Template) -> None:
    data = launch_template_data(template)
    assert data["InstanceType"] == "t3.medium"
    assert data["UserData"] == {"Fn::Base64": "#cloud-config\n"}


def test_launch_template_requires_imdsv2_reachable_from_containers(template: Template) -> None:
    options = launch_template_data(template)["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 2)


def test_nodes_may_read_their_own_tags_from_instance_metadata(template: Template) -> None:
    """Nodes find their stack and group (for ready signals and discovery) in their tags."""
    assert launch_template_data(template)["MetadataOptions"]["InstanceMetadataTags"] == "enabled"


def test_root_volume_is_encrypted_gp3_of_the_given_size(template: Template) -> None:
    assert launch_template_data(template)["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 50, "VolumeType": "gp3"},
        }
    ]


def test_nodes_get_no_public_address(template: Template) -> None:
    (interface,) = launch_template_data(template)["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False


def test_no_key_pair_by_default(template: Template) -> None:
    assert "KeyName" not in launch_template_data(template)


def test_key_pair_is_used_when_given() -> None:
    assert launch_template_data(node_group_template(key_pair_name="ops"))["KeyName"] == "ops"


def test_instance_role_has_session_manager(template: Template) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "ec2.amazonaws.com"}})]}
            ),
            "ManagedPolicyArns": [
                {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AmazonSSMManagedInstanceCore"]]}
            ],
        },
    )


def test_router_port_is_open_only_from_the_load_balancer(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    rules = template.find_resources(
        "AWS::EC2::SecurityGroupIngress",
        {"Properties": {"GroupId": {"Fn::GetAtt": [nodes, "GroupId"]}, "FromPort": 8080}},
    )
    (rule,) = rules.values()
    elb_group = security_group_id(template, "ConstructUnderTest/Elb/SecurityGroup")
    assert rule["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [elb_group, "GroupId"]}


def test_cluster_ports_are_open_only_between_nodes(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    for port, _ in CLUSTER_PORTS:
        template.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress",
            {
                "GroupId": {"Fn::GetAtt": [nodes, "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": [nodes, "GroupId"]},
                "FromPort": port,
                "ToPort": port,
                "IpProtocol": "tcp",
            },
        )


def test_nodes_admit_nothing_else(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    (group,) = [g for key, g in template.find_resources("AWS::EC2::SecurityGroup").items() if key == nodes]
    assert "SecurityGroupIngress" not in group["Properties"]
    rules = template.find_resources(
        "AWS::EC2::SecurityGroupIngress", {"Properties": {"GroupId": {"Fn::GetAtt": [nodes, "GroupId"]}}}
    )
    assert sorted(rule["Properties"]["FromPort"] for rule in rules.values()) == sorted(
        [8080, *(port for port, _ in CLUSTER_PORTS)]
    )
